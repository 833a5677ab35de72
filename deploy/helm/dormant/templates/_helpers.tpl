{{/* Names, labels and the environment every Dormant container shares. */}}

{{- define "dormant.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "dormant.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: <fullname>-<component>. */}}
{{- define "dormant.component" -}}
{{- printf "%s-%s" (include "dormant.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels. app.kubernetes.io/part-of=dormant and app.kubernetes.io/component (gateway, controller,
pod) are what deploy/observability/prometheus.yml scrapes by. */}}
{{- define "dormant.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "dormant.selectorLabels" . }}
{{- end -}}

{{- define "dormant.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dormant.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/part-of: dormant
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dormant.image" -}}
{{- $image := index .root.Values.images .image -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "dormant.brokerSecret" -}}
{{- default (printf "%s-broker" (include "dormant.fullname" .)) .Values.broker.existingSecret -}}
{{- end -}}

{{- define "dormant.catalogSecret" -}}
{{- default (printf "%s-catalog" (include "dormant.fullname" .)) .Values.catalog.existingSecret -}}
{{- end -}}

{{- define "dormant.catalogHasPassword" -}}
{{- if or .Values.catalog.existingSecret .Values.catalog.password -}}true{{- end -}}
{{- end -}}

{{- define "dormant.layerRegistry" -}}
{{- if hasPrefix "oci" .Values.layerStore.url -}}true{{- end -}}
{{- end -}}

{{/* The layer store's volume (a directory store) or registry CA (a registry store). */}}
{{- define "dormant.layersVolume" -}}
{{- if include "dormant.layerRegistry" . }}
{{- with .Values.layerStore.registry.caSecret }}
- name: registry-ca
  secret:
    secretName: {{ . }}
{{- end }}
{{- else }}
- name: layers
  persistentVolumeClaim:
    claimName: {{ include "dormant.layersClaim" . }}
{{- end }}
{{- end -}}

{{- define "dormant.layersMount" -}}
{{- if include "dormant.layerRegistry" .root }}
{{- if .root.Values.layerStore.registry.caSecret }}
- name: registry-ca
  mountPath: /etc/dormant/registry-ca
  readOnly: true
{{- end }}
{{- else }}
- name: layers
  mountPath: {{ .root.Values.layerStore.mountPath }}
  readOnly: {{ .readOnly }}
{{- end }}
{{- end -}}

{{- define "dormant.layersClaim" -}}
{{- default (printf "%s-layers" (include "dormant.fullname" .)) .Values.layerStore.persistence.existingClaim -}}
{{- end -}}

{{/* The environment of every Dormant container: broker (as the account of `.account`), catalog,
layer store, identity, and the values' `env`. Kubernetes expands $(VAR) from variables defined before,
so the broker URL is put together from the Secret's password without the chart ever reading it. */}}
{{- define "dormant.env" -}}
{{- $v := .root.Values -}}
- name: DORMANT_BROKER_USER
  value: {{ index $v.broker.users .account | quote }}
- name: DORMANT_BROKER_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "dormant.brokerSecret" .root }}
      key: {{ printf "%s-password" .account }}
- name: DORMANT_BROKER_URL
  value: {{ printf "%s://$(DORMANT_BROKER_USER):$(DORMANT_BROKER_PASSWORD)@%s:%v" (ternary "mqtts" "mqtt" $v.broker.tls.enabled) $v.broker.host $v.broker.port | quote }}
{{- if $v.broker.tls.enabled }}
- name: DORMANT_BROKER_CA_FILE
  value: /etc/dormant/broker-tls/ca.crt
- name: DORMANT_BROKER_CERT_FILE
  value: /etc/dormant/broker-tls/tls.crt
- name: DORMANT_BROKER_KEY_FILE
  value: /etc/dormant/broker-tls/tls.key
{{- end }}
{{- if include "dormant.catalogHasPassword" .root }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "dormant.catalogSecret" .root }}
      key: {{ $v.catalog.passwordKey }}
{{- end }}
{{- if and $v.catalog.existingSecret $v.catalog.urlKey }}
- name: DORMANT_CATALOG_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.catalog.existingSecret }}
      key: {{ $v.catalog.urlKey }}
{{- else }}
- name: DORMANT_CATALOG_URL
  value: {{ required "catalog.url is required" $v.catalog.url | quote }}
{{- end }}
- name: DORMANT_LAYER_STORE
  value: {{ $v.layerStore.url | quote }}
{{- if include "dormant.layerRegistry" .root }}
{{- with $v.layerStore.registry.existingSecret }}
- name: DORMANT_REGISTRY_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: username}
- name: DORMANT_REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . }}, key: password}
{{- end }}
{{- if $v.layerStore.registry.caSecret }}
- name: DORMANT_REGISTRY_CA_FILE
  value: /etc/dormant/registry-ca/ca.crt
{{- end }}
{{- end }}
{{- with $v.oidc.issuer }}
- name: DORMANT_OIDC_ISSUER
  value: {{ . | quote }}
{{- end }}
{{- with $v.oidc.audience }}
- name: DORMANT_OIDC_AUDIENCE
  value: {{ . | quote }}
{{- end }}
{{- with $v.oidc.jwksUrl }}
- name: DORMANT_OIDC_JWKS_URL
  value: {{ . | quote }}
{{- end }}
- name: DORMANT_LOG_FORMAT
  value: json
- name: PYTHONUNBUFFERED
  value: "1"
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: HOME
  value: /tmp
{{- range $name, $value := $v.env }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{- define "dormant.brokerTlsVolume" -}}
{{- if .Values.broker.tls.enabled }}
- name: broker-tls
  secret:
    secretName: {{ required "broker.tls.secretName is required when broker.tls.enabled" .Values.broker.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- define "dormant.brokerTlsMount" -}}
{{- if .Values.broker.tls.enabled }}
- name: broker-tls
  mountPath: /etc/dormant/broker-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The pool's autoscaling figure: the pods the pool should have = pods holding a slot + replica slots
no pod holds (a version in a failed start's back-off left out: more pods would not start it) + spare
free pods. The same figures as the controller's dormant_pool_* gauges (dormant_catalog.observed),
limited to the base runtimes this pool provides. */}}
{{- define "dormant.poolWantedSql" -}}
{{- $p := .Values.pool -}}
{{- $images := list -}}
{{- range $p.baseImages }}{{ $images = append $images (printf "'%s'" (replace "'" "''" .)) }}{{ end -}}
SELECT (SELECT count(*) FROM pods AS p WHERE p.state <> 'gone' AND p.last_seen > now() - interval '30 seconds' AND p.base_images && ARRAY[{{ join ", " $images }}]::text[] AND EXISTS (SELECT 1 FROM replica_slots AS s WHERE s.pod_id = p.pod_id AND s.lease_expires_at > now())) + (SELECT count(*) FROM replica_slots AS s JOIN application_catalog AS c ON c.app_name = s.app_name AND c.version = s.version WHERE (s.pod_id IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= now()) AND c.base_image IN ({{ join ", " $images }}) AND NOT EXISTS (SELECT 1 FROM start_failures AS f WHERE f.app_name = s.app_name AND f.version = s.version AND f.retry_at > now())) + {{ int $p.autoscaling.spareFreePods }} AS pods_wanted
{{- end -}}

{{/* The same figure from the controller's gauges, for Prometheus (KEDA's prometheus trigger and
prometheus-adapter). */}}
{{- define "dormant.poolWantedPromQL" -}}
{{- $p := .Values.pool -}}
{{- $images := list -}}
{{- range $p.baseImages }}{{ $images = append $images (regexQuoteMeta . | replace "\\" "\\\\") }}{{ end -}}
sum(dormant_pool_pods_claimed{namespace="{{ .Release.Namespace }}"}) + (sum(dormant_pool_slots_unassigned{namespace="{{ .Release.Namespace }}",base_image=~"{{ join "|" $images }}"}) or vector(0)) + {{ int $p.autoscaling.spareFreePods }}
{{- end -}}
