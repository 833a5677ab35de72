"""Setting up OpenTelemetry tracing in a Dormant process (gateway, runtime), from the standard ``OTEL_*``
variables: the tracer provider, its sampler, its resource and an OTLP/HTTP exporter.

``configure_tracing`` sets the global tracer provider, or does nothing and returns None when tracing is
off. It is off unless an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT``), and off with ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none``.
The spans themselves are made by the SDK (``dormant._tracing``), which sees the provider through the
OpenTelemetry API.

Settings, each taking effect or refused with ``ValueError`` (a setting that cannot be honoured is an
error at start, never silently replaced by a default):

* ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (the full URL, ``…/v1/traces``) or ``OTEL_EXPORTER_OTLP_ENDPOINT``
  (the base URL; ``/v1/traces`` is added), ``…_HEADERS``, ``…_TIMEOUT``, ``…_COMPRESSION``,
  ``…_CERTIFICATE``: read by the OTLP/HTTP exporter;
* ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``: ``http/protobuf`` only (the exporter shipped);
* ``OTEL_TRACES_EXPORTER``: ``otlp`` (default) or ``none``;
* ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: ``parentbased_always_on`` (default),
  ``parentbased_traceidratio`` (the ratio in ``[0, 1]``, default 1), ``parentbased_always_off``,
  ``always_on``, ``always_off``, ``traceidratio``; parent-based samplers follow the caller's sampled flag;
* ``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``: override the process's defaults
  (``service.name`` is ``dormant-gateway`` for a gateway, the service's name for a runtime);
* ``OTEL_BSP_*``: the batch span processor's queue, batch size and delays.

The OpenTelemetry SDK and exporter are imported only when tracing is on. A leaf module: it imports no
other Dormant package.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOL_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
SUPPORTED_PROTOCOL = "http/protobuf"
SAMPLERS = (
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
    "always_on",
    "always_off",
    "traceidratio",
)
DEFAULT_SAMPLER = "parentbased_always_on"

_provider: TracerProvider | None = None


def _env(environ: Mapping[str, str], name: str) -> str:
    return environ.get(name, "").strip()


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the settings turn tracing on (an endpoint, not disabled); says nothing of their validity."""
    environ = os.environ if environ is None else environ
    if _env(environ, "OTEL_SDK_DISABLED").lower() == "true":
        return False
    if _env(environ, "OTEL_TRACES_EXPORTER").lower() == "none":
        return False
    return any(_env(environ, name) for name in ENDPOINT_VARIABLES)


def sampler_from_env(environ: Mapping[str, str] | None = None) -> Sampler:
    """The sampler ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG`` name; ``ValueError`` for a
    name or ratio that is not one (the SDK alone would warn and sample everything)."""
    environ = os.environ if environ is None else environ
    name = _env(environ, "OTEL_TRACES_SAMPLER").lower() or DEFAULT_SAMPLER
    if name not in SAMPLERS:
        raise ValueError(f"OTEL_TRACES_SAMPLER={name!r} is not one of {', '.join(SAMPLERS)}")
    raw = _env(environ, "OTEL_TRACES_SAMPLER_ARG")
    ratio = 1.0
    if name.endswith("traceidratio") and raw:
        try:
            ratio = float(raw)
        except ValueError:
            ratio = -1.0
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"OTEL_TRACES_SAMPLER_ARG={raw!r} is not a ratio between 0 and 1")
    # lazy: start-up time and memory (the SDK and its exporter are ~13 MB a process that does not trace
    # never loads)
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased, TraceIdRatioBased

    root: Sampler
    if name.endswith("always_on"):
        root = ALWAYS_ON
    elif name.endswith("always_off"):
        root = ALWAYS_OFF
    else:
        root = TraceIdRatioBased(ratio)
    return ParentBased(root) if name.startswith("parentbased_") else root


def _check_exporter(environ: Mapping[str, str]) -> None:
    exporter = _env(environ, "OTEL_TRACES_EXPORTER").lower() or "otlp"
    if exporter != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r}: Dormant exports traces with otlp (or none)")
    for name in PROTOCOL_VARIABLES:
        protocol = _env(environ, name).lower()
        if protocol:
            if protocol != SUPPORTED_PROTOCOL:
                raise ValueError(f"{name}={protocol!r}: Dormant exports traces over {SUPPORTED_PROTOCOL}")
            break  # the signal-specific one, when set, is the one that counts


def configure_tracing(
    service_name: str,
    *,
    attributes: Mapping[str, str | int] | None = None,
    exporter: SpanExporter | None = None,
) -> TracerProvider | None:
    """Set up this process's tracer provider from the ``OTEL_*`` settings; None when tracing is off.

    ``service_name`` and ``attributes`` are the resource's defaults (``OTEL_SERVICE_NAME`` and
    ``OTEL_RESOURCE_ATTRIBUTES`` win). ``exporter`` replaces the OTLP/HTTP exporter (tests).
    ``ValueError`` for a setting that cannot be honoured. Called once per process; a second call
    returns the provider of the first.
    """
    global _provider
    if _provider is not None:
        return _provider
    if not tracing_enabled() and exporter is None:
        return None
    _check_exporter(os.environ)
    sampler = sampler_from_env()
    # lazy: start-up time and memory (see sampler_from_env)
    from opentelemetry import trace
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    defaults = {"service.name": service_name, "service.namespace": "dormant", **(attributes or {})}
    # The detector reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME: merged last, they win.
    resource = Resource.create(defaults).merge(OTELResourceDetector().detect())
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    provider = TracerProvider(resource=resource, sampler=sampler)  # shut down (flushed) at exit
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Export what is buffered and stop (a process that ends without running its exit handlers)."""
    if _provider is not None:
        _provider.shutdown()
