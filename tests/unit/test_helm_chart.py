"""The Helm chart in deploy/helm/dormant (issue 14, item 3), rendered and linted by Helm's own Go code
(``helm-python-sdk``: libhelm, no helm binary, no cluster), every object validated against the Kubernetes
schemas of a current release (``kubernetes-validate``, strict: an unknown field is an error), KEDA's
objects against the fields KEDA documents.

Rendered with the default values, with values-production.yaml and with the variations that switch
objects on and off; the tests read the objects as a cluster would get them.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML, with datamodel-code-generator

from dormant_telemetry import metrics as m

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "dormant"
PRODUCTION = CHART / "values-production.yaml"
ADAPTER = ROOT / "deploy" / "helm" / "prometheus-adapter-values.yaml"
KUBE_VERSION = kubernetes_validate.utils.latest_version()
NAMESPACE = "dormant"

helm.disable_logging()

Doc = dict[str, Any]
CLUSTER_SCOPED = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def production_values() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(PRODUCTION.read_text())
    return loaded


def merged(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def render(values: dict[str, Any] | None = None, *, release: str = "dormant") -> list[Doc]:
    """The chart's objects for ``values``: rendered once per distinct values and release in this module,
    each caller getting its own copy (a test may change what it gets)."""
    return copy.deepcopy(list(_rendered(json.dumps(values or {}, sort_keys=True), release)))


@cache
def _rendered(values_json: str, release: str) -> tuple[Doc, ...]:
    manifests = helm.Chart.load(CHART).render(
        json.loads(values_json), name=release, namespace=NAMESPACE, is_install=True
    )
    docs: list[Doc] = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return tuple(docs)


@pytest.fixture(scope="module", autouse=True)
def _schemas_read_once() -> Iterator[None]:
    """kubernetes-validate reads its schema files again on every call (1.8 MB of definitions each
    time); in this module each file is read once (they do not change, and jsonschema does not modify
    a schema). The library's own function is back when the module is done."""
    with pytest.MonkeyPatch.context() as patch:
        utils = kubernetes_validate.utils
        patch.setattr(utils, "schema_contents", cache(utils.schema_contents))
        yield


@cache
def default_docs() -> tuple[Doc, ...]:
    return tuple(render())


@cache
def production_docs() -> tuple[Doc, ...]:
    return tuple(render(production_values()))


def find(docs: Any, kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: Any, kind: str, name: str) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def container(deployment: Doc) -> Doc:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    found: Doc = containers[0]
    return found


def env(c: Doc) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


# ------------------------------------------------------------------ KEDA's documented fields
# keda.sh/v1alpha1, as https://keda.sh/docs/latest/reference/scaledobject-spec/ and
# .../concepts/authentication/ list them (KEDA 2.x); additionalProperties false catches a misspelt field.

_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "authenticationRef": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string"},
                "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
            },
        },
    },
}
_META = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "labels": {"type": "object"}},
}
SCALED_OBJECT = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                        },
                        "scalingModifiers": {"type": "object"},
                    },
                },
                "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
            },
        },
    },
}
TRIGGER_AUTHENTICATION = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _META,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {"parameter": {"type": "string"}, "name": {}, "key": {}},
                    },
                },
                "env": {"type": "array"},
                "podIdentity": {"type": "object"},
                "hashiCorpVault": {"type": "object"},
            },
        },
    },
}
CRDS = {"ScaledObject": SCALED_OBJECT, "TriggerAuthentication": TRIGGER_AUTHENTICATION}


def validate(doc: Doc) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        jsonschema.validate(doc, CRDS[doc["kind"]])
        behavior = doc["spec"].get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior")
        if behavior is not None:  # KEDA passes it to the HPA it makes: the HPA's own schema applies
            hpa = {
                "apiVersion": "autoscaling/v2",
                "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "keda-hpa"},
                "spec": {
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
                    "maxReplicas": 2,
                    "behavior": behavior,
                },
            }
            kubernetes_validate.validate(hpa, KUBE_VERSION, strict=True)
        return
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


# ------------------------------------------------------------------ rendering, linting, schemas

VARIANTS = {
    "default": {},
    "production": None,
    "keda-prometheus": {"pool": {"autoscaling": {"mode": "keda", "keda": {"trigger": "prometheus"}}}},
    "keda-catalog-url-secret": {
        "catalog": {"existingSecret": "cnpg-app", "urlKey": "uri"},
        "pool": {"autoscaling": {"mode": "keda"}},
    },
    "fixed-pool": {"pool": {"autoscaling": {"mode": "none"}, "deletionCost": False}},
    "gateway-https-ingress": {
        "gateway": {"tlsSecretName": "gw-tls", "ingress": {"enabled": True}},
        "oidc": {"gatewayClient": {"clientId": "dormant-gateway", "clientSecret": "s3cret"}},
        "catalog": {"password": "pg-pass"},
    },
}


def variant(name: str) -> list[Doc]:
    values = production_values() if VARIANTS[name] is None else VARIANTS[name]
    return list(production_docs()) if name == "production" else render(values)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_object_validates(name: str) -> None:
    docs = variant(name)
    assert docs
    for doc in docs:
        try:
            validate(doc)
        except Exception as exc:  # name the object: kubernetes-validate's message does not
            raise AssertionError(f"{doc['kind']}/{doc['metadata']['name']} ({name}): {exc}") from None
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE


def test_a_wrong_field_does_not_validate() -> None:
    deployment = dict(one(default_docs(), "Deployment", "dormant-pool"))
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
    scaled = one(production_docs(), "ScaledObject", "dormant-pool")
    with pytest.raises(jsonschema.ValidationError):
        validate({**scaled, "spec": {**scaled["spec"], "minReplicas": 1}})


@pytest.mark.parametrize("values", [None, "production"])
def test_the_chart_lints_clean(values: str | None) -> None:
    report = helm.lint(
        CHART,
        production_values() if values else None,
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBE_VERSION}.0",
    )
    assert report["errors"] == []
    serious = [msg for msg in report["messages"] if msg["severity"] >= 2]
    assert serious == [], serious


def test_bad_values_are_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"pool\.autoscaling\.mode"):
        render({"pool": {"autoscaling": {"mode": "vpa"}}})
    with pytest.raises(helm.HelmError, match=r"broker\.tls\.secretName"):
        render({"broker": {"tls": {"enabled": True}}})
    with pytest.raises(helm.HelmError, match="letters, digits"):
        render({"broker": {"passwords": {"runtimes": "p@ss word"}}})


# ------------------------------------------------------------------ the pool


@pytest.mark.parametrize("name", ["default", "production"])
def test_the_pool_runs_the_sidecar_with_probes_and_the_drain_hook(name: str) -> None:
    docs = variant(name)
    pool = one(docs, "Deployment", "dormant-pool")
    spec = pool["spec"]["template"]["spec"]
    c = container(pool)
    assert c["command"] == ["python", "-m", "dormant_sidecar"]
    assert "--metrics-host=0.0.0.0" in c["args"] and "--base-image=dormant-python:1" in c["args"]
    port = {p["name"]: p["containerPort"] for p in c["ports"]}["metrics"]
    assert f"--metrics-port={port}" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"
    hook = c["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:4] == ["python", "-m", "dormant_sidecar.kubernetes", "drain"]
    drain = int(re.search(r"--drain-timeout=(\d+)", " ".join(c["args"])).group(1))  # type: ignore[union-attr]
    hook_timeout = int(hook[4].removeprefix("--timeout="))
    # The hook outlasts the sidecar's drain, and the grace period outlasts the hook.
    assert drain < hook_timeout < spec["terminationGracePeriodSeconds"]
    variables = env(c)
    assert variables["DORMANT_POD_ID"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["DORMANT_POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert variables["DORMANT_POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert variables["DORMANT_BROKER_USER"] == "dormant.runtimes"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_container_runs_as_non_root_on_a_read_only_root(name: str) -> None:
    for deployment in find(variant(name), "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
        c = container(deployment)
        security = c["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False and security["capabilities"]["drop"] == ["ALL"]
        # Every writable path is a volume: /tmp on all, the layer cache on the pool.
        mounts = {mount["mountPath"]: mount["name"] for mount in c["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        if deployment["metadata"]["name"] == "dormant-pool":
            assert "emptyDir" in volumes[mounts["/var/lib/dormant/work"]]
            assert "--work-dir=/var/lib/dormant/work" in c["args"]


def quantity_bytes(text: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi|Ti)?", text)
    assert match is not None, text
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


@pytest.mark.parametrize("name", ["default", "production"])
def test_the_layer_cache_fits_the_work_dir(name: str) -> None:
    pool = one(variant(name), "Deployment", "dormant-pool")
    volumes = {v["name"]: v for v in pool["spec"]["template"]["spec"]["volumes"]}
    limit = quantity_bytes(volumes["work"]["emptyDir"]["sizeLimit"])
    cache = int(env(container(pool))["DORMANT_LAYER_CACHE_MAX_BYTES"])
    assert 0 < cache <= limit // 2  # room left for the unpacked layers


def test_a_registry_layer_store_needs_no_volume() -> None:
    docs = production_docs()
    assert find(docs, "PersistentVolumeClaim") == []
    for name in ("dormant-pool", "dormant-gateway"):
        deployment = one(docs, "Deployment", name)
        variables = env(container(deployment))
        assert variables["DORMANT_LAYER_STORE"] == "oci://registry.example.com/dormant"
        assert variables["DORMANT_REGISTRY_PASSWORD"] == {
            "secretKeyRef": {"name": "dormant-registry", "key": "password"}
        }
        assert "layers" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}
    ca = render(
        {"layerStore": {"url": "oci://registry.internal/dormant", "registry": {"caSecret": "reg-ca"}}}
    )
    pool = one(ca, "Deployment", "dormant-pool")
    assert env(container(pool))["DORMANT_REGISTRY_CA_FILE"] == "/etc/dormant/registry-ca/ca.crt"
    assert "DORMANT_REGISTRY_USERNAME" not in env(container(pool))
    # A directory store: the claim, read-write on the gateway, read-only on the pods.
    docs = default_docs()
    claim = one(docs, "PersistentVolumeClaim", "dormant-layers")
    for name, read_only in (("dormant-gateway", False), ("dormant-pool", True)):
        deployment = one(docs, "Deployment", name)
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["layers"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        (mount,) = [m for m in container(deployment)["volumeMounts"] if m["name"] == "layers"]
        assert mount["readOnly"] is read_only and mount["mountPath"] == "/var/lib/dormant/layers"


def test_runtime_class_only_when_set() -> None:
    assert (
        "runtimeClassName"
        not in one(default_docs(), "Deployment", "dormant-pool")["spec"]["template"]["spec"]
    )
    spec = one(production_docs(), "Deployment", "dormant-pool")["spec"]["template"]["spec"]
    assert spec["runtimeClassName"] == "kata-fc"
    for name in ("dormant-gateway", "dormant-controller"):  # only function pods go to micro-VMs
        assert (
            "runtimeClassName" not in one(production_docs(), "Deployment", name)["spec"]["template"]["spec"]
        )


def test_the_pool_may_patch_pods_and_nothing_else() -> None:
    docs = default_docs()
    role = one(docs, "Role", "dormant-pool")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "patch"]}]
    binding = one(docs, "RoleBinding", "dormant-pool")
    assert binding["roleRef"]["name"] == "dormant-pool"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dormant-pool", "namespace": NAMESPACE}]
    spec = one(docs, "Deployment", "dormant-pool")["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "dormant-pool" and spec["automountServiceAccountToken"] is True
    for name in ("dormant-gateway", "dormant-controller"):
        assert (
            one(docs, "Deployment", name)["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
        )
    fixed = render(VARIANTS["fixed-pool"])
    assert find(fixed, "Role") == [] and find(fixed, "RoleBinding") == []
    pool = one(fixed, "Deployment", "dormant-pool")
    assert pool["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "DORMANT_POD_NAME" not in env(container(pool))
    secrets = render({"pool": {"readSecrets": True}})
    rules = one(secrets, "Role", "dormant-pool")["rules"]
    assert {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]} in rules
    assert (
        env(container(one(secrets, "Deployment", "dormant-pool")))["DORMANT_SECRETS_PROVIDER"] == "kubernetes"
    )


def test_an_admission_policy_keeps_the_pools_token_to_its_own_deletion_cost() -> None:
    docs = default_docs()
    (policy,) = find(docs, "ValidatingAdmissionPolicy")
    (binding,) = find(docs, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": NAMESPACE
    }
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"][0]["resources"] == ["pods"]
    (condition,) = spec["matchConditions"]
    # The service account the pool's pods run as, in the release's namespace.
    assert (
        condition["expression"] == "request.userInfo.username == 'system:serviceaccount:dormant:dormant-pool'"
    )
    expressions = " ".join(v["expression"] for v in spec["validations"])
    assert "request.userInfo.extra['authentication.kubernetes.io/pod-name'][0]" in expressions
    assert "object.spec == oldObject.spec" in expressions
    assert expressions.count("'controller.kubernetes.io/pod-deletion-cost'") == 2
    assert find(render({"pool": {"deletionCostPolicy": False}}), "ValidatingAdmissionPolicy") == []
    assert find(render(VARIANTS["fixed-pool"]), "ValidatingAdmissionPolicy") == []


@pytest.mark.parametrize("name", ["default", "production"])
def test_disruption_budgets_select_their_pods(name: str) -> None:
    docs = variant(name)
    for component in ("pool", "gateway", "controller"):
        pdb = one(docs, "PodDisruptionBudget", f"dormant-{component}")
        labels = one(docs, "Deployment", f"dormant-{component}")["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert one(docs, "PodDisruptionBudget", "dormant-pool")["spec"]["maxUnavailable"] in (1, "10%")


# ------------------------------------------------------------------ autoscaling


def test_default_values_scale_the_pool_with_an_hpa_on_the_adapters_metric() -> None:
    docs = default_docs()
    assert find(docs, "ScaledObject") == []
    hpa = one(docs, "HorizontalPodAutoscaler", "dormant-pool")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "dormant-pool",
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "External"
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}
    adapter = yaml.safe_load(ADAPTER.read_text())
    (rule,) = adapter["rules"]["external"]
    assert metric["external"]["metric"]["name"] == rule["name"]["as"]
    named = set(re.findall(r"\bdormant_[a-z0-9_]+", rule["metricsQuery"] + rule["seriesQuery"]))
    assert named and named <= m.exposed_names(), named - m.exposed_names()
    # An autoscaled Deployment leaves replicas to the autoscaler (helm upgrade would reset them).
    assert "replicas" not in one(docs, "Deployment", "dormant-pool")["spec"]


def test_production_values_scale_the_pool_with_keda_on_the_catalog() -> None:
    docs = production_docs()
    assert find(docs, "HorizontalPodAutoscaler") == []
    scaled = one(docs, "ScaledObject", "dormant-pool")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == "dormant-pool"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (10, 500)
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "postgresql" and trigger["metricType"] == "AverageValue"
    meta = trigger["metadata"]
    assert meta["targetQueryValue"] == "1"
    assert (meta["host"], meta["port"], meta["userName"], meta["dbName"], meta["sslmode"]) == (
        "postgres-rw.databases.svc.cluster.local",
        "5432",
        "dormant",
        "dormant",
        "require",
    )
    assert "FROM replica_slots" in meta["query"] and "+ 5 AS pods_wanted" in meta["query"]
    assert "'dormant-python:1'" in meta["query"]
    auth = one(docs, "TriggerAuthentication", "dormant-pool")
    assert trigger["authenticationRef"] == {"name": "dormant-pool"}
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "password", "name": "dormant-catalog", "key": "password"}
    ]


def test_keda_variants() -> None:
    url = render(VARIANTS["keda-catalog-url-secret"])
    (trigger,) = one(url, "ScaledObject", "dormant-pool")["spec"]["triggers"]
    assert "host" not in trigger["metadata"]
    auth = one(url, "TriggerAuthentication", "dormant-pool")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "connection", "name": "cnpg-app", "key": "uri"}]
    pool_env = env(container(one(url, "Deployment", "dormant-pool")))
    assert pool_env["DORMANT_CATALOG_URL"] == {"secretKeyRef": {"name": "cnpg-app", "key": "uri"}}
    prom = render(VARIANTS["keda-prometheus"])
    (trigger,) = one(prom, "ScaledObject", "dormant-pool")["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "1"
    query = trigger["metadata"]["query"]
    assert 'dormant_pool_pods_claimed{namespace="dormant"}' in query and "+ 2" in query
    assert set(re.findall(r"\bdormant_[a-z0-9_]+", query)) <= m.exposed_names()
    assert find(prom, "TriggerAuthentication") == []
    fixed = render(VARIANTS["fixed-pool"])
    assert find(fixed, "ScaledObject") == [] and find(fixed, "HorizontalPodAutoscaler") == []
    assert one(fixed, "Deployment", "dormant-pool")["spec"]["replicas"] == 3


# ------------------------------------------------------------------ gateway and controller


def test_the_gateway_has_a_service_probes_and_an_optional_ingress() -> None:
    docs = default_docs()
    gateway = one(docs, "Deployment", "dormant-gateway")
    c = container(gateway)
    assert c["command"] == ["dormant", "gateway"] and "--host=0.0.0.0" in c["args"]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http", "scheme": "HTTP"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert env(c)["DORMANT_BROKER_USER"] == "dormant.gateway"
    service = one(docs, "Service", "dormant-gateway")
    assert service["spec"]["selector"].items() <= gateway["spec"]["template"]["metadata"]["labels"].items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert find(docs, "Ingress") == []
    https = render(VARIANTS["gateway-https-ingress"])
    c = container(one(https, "Deployment", "dormant-gateway"))
    assert c["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert "--tls-cert=/etc/dormant/gateway-tls/tls.crt" in c["args"]
    variables = env(c)
    assert variables["DORMANT_GATEWAY_CLIENT_SECRET"] == {
        "secretKeyRef": {"name": "dormant-gateway-oidc", "key": "client-secret"}
    }
    assert variables["PGPASSWORD"] == {"secretKeyRef": {"name": "dormant-catalog", "key": "password"}}
    ingress = one(https, "Ingress", "dormant-gateway")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "dormant-gateway", "port": {"name": "http"}}


def test_the_controller_runs_several_replicas_ready_on_healthz() -> None:
    controller = one(default_docs(), "Deployment", "dormant-controller")
    assert controller["spec"]["replicas"] >= 2  # the leader lock makes more than one safe
    c = container(controller)
    assert c["command"] == ["dormant", "controller"]
    # /readyz is 200 on the leader only: a rolling update would wait for a new replica forever.
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert env(c)["DORMANT_BROKER_USER"] == "dormant.controller"


def test_labels_and_ports_match_the_prometheus_scrape_config() -> None:
    scrape = (ROOT / "deploy" / "observability" / "prometheus.yml").read_text()
    for component, port in (("gateway", "http"), ("controller", "metrics"), ("pool", "metrics")):
        deployment = one(default_docs(), "Deployment", f"dormant-{component}")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "dormant"
        assert f"regex: {labels['app.kubernetes.io/component']}" in scrape
        assert port in {p["name"] for p in container(deployment)["ports"]}


# ------------------------------------------------------------------ secrets and the broker


def test_credentials_come_from_secrets() -> None:
    docs = default_docs()
    secret = one(docs, "Secret", "dormant-broker")
    data = secret["stringData"]
    passwords = {k: data[f"{k}-password"] for k in ("runtimes", "controller", "gateway")}
    for password in passwords.values():
        assert re.fullmatch(r"[A-Za-z0-9]{40}", password)
    assert len(set(passwords.values())) == 3
    csv = data["emqx-bootstrap.csv"].splitlines()
    assert csv[0] == "user_id,password,is_superuser"
    assert set(csv[1:]) == {
        f"dormant.runtimes,{passwords['runtimes']},false",
        f"dormant.controller,{passwords['controller']},false",
        f"dormant.gateway,{passwords['gateway']},false",
    }
    c = container(one(docs, "Deployment", "dormant-pool"))
    variables = env(c)
    assert variables["DORMANT_BROKER_PASSWORD"] == {
        "secretKeyRef": {"name": "dormant-broker", "key": "runtimes-password"}
    }
    names = [e["name"] for e in c["env"]]
    # $(VAR) expands only variables defined earlier in the list.
    assert names.index("DORMANT_BROKER_PASSWORD") < names.index("DORMANT_BROKER_URL")
    assert variables["DORMANT_BROKER_URL"] == (
        "mqtt://$(DORMANT_BROKER_USER):$(DORMANT_BROKER_PASSWORD)@emqx-headless.emqx.svc.cluster.local:1883"
    )
    given = render({"broker": {"passwords": {"gateway": "given-pass_1"}}})
    assert one(given, "Secret", "dormant-broker")["stringData"]["gateway-password"] == "given-pass_1"


def test_production_uses_existing_secrets_and_mutual_tls() -> None:
    docs = production_docs()
    assert find(docs, "Secret") == []  # every credential is an existing Secret
    for name in ("dormant-pool", "dormant-gateway", "dormant-controller"):
        deployment = one(docs, "Deployment", name)
        c = container(deployment)
        variables = env(c)
        assert (
            variables["DORMANT_BROKER_URL"].startswith("mqtts://")
            and ":8884" in variables["DORMANT_BROKER_URL"]
        )
        assert variables["DORMANT_BROKER_PASSWORD"]["secretKeyRef"]["name"] == "dormant-broker-accounts"
        assert variables["DORMANT_BROKER_CERT_FILE"] == "/etc/dormant/broker-tls/tls.crt"
        assert variables["PGPASSWORD"] == {"secretKeyRef": {"name": "dormant-catalog", "key": "password"}}
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["broker-tls"]["secret"]["secretName"] == "dormant-broker-client-tls"
        for value in variables.values():  # no credential in the clear
            assert "s3cret" not in str(value)


def test_the_emqx_config_map_carries_deploy_emqx() -> None:
    config = one(default_docs(), "ConfigMap", "dormant-emqx")
    emqx = ROOT / "deploy" / "emqx"
    assert config["data"]["dormant.conf"] == (emqx / "emqx.conf").read_text()
    assert config["data"]["dormant-acl.conf"] == (emqx / "acl.conf").read_text()


# ------------------------------------------------------------------ network policies


@pytest.mark.parametrize("name", ["default", "production"])
def test_network_policies_isolate_each_component(name: str) -> None:
    docs = variant(name)
    values = production_values() if name == "production" else {}
    broker_port = values.get("broker", {}).get("port", 1883)
    for component in ("pool", "gateway", "controller"):
        policy = one(docs, "NetworkPolicy", f"dormant-{component}")
        labels = one(docs, "Deployment", f"dormant-{component}")["spec"]["template"]["metadata"]["labels"]
        spec = policy["spec"]
        assert spec["podSelector"]["matchLabels"].items() <= labels.items()
        assert spec["policyTypes"] == ["Ingress", "Egress"]
        (ingress,) = spec["ingress"]
        expected = 8080 if component == "gateway" else 9464
        assert ingress["ports"] == [{"protocol": "TCP", "port": expected}]
        egress_ports = {p["port"] for rule in spec["egress"] for p in rule.get("ports", [])}
        assert {53, broker_port, 5432} <= egress_ports
        api_server = {443, 6443} <= egress_ports
        assert api_server == (component == "pool"), (component, egress_ports)
    pool = one(docs, "NetworkPolicy", "dormant-pool")
    assert pool["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
