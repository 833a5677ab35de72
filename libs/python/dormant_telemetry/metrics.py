"""Dormant's Prometheus metrics: every family's name, type, labels and exporting process, the mapping
from the seed's metric names, and helpers to build them with ``prometheus_client``.

Who exports what, and why there:

- **The controller** exports the per-function metrics (invocations, errors, throttles, cold starts,
  duration, init duration, memory, concurrent executions). Runtimes already publish one-second windows
  on ``mesh/stats/{svc}/v{N}/{pod}`` and the active controller receives every one of them, so it sums
  them into counters and histograms; a runtime (one process per version inside a pod, started and
  replaced at will) would be awkward to scrape, and its hot path only counts into its window. The
  controller also exports the catalog's figures (functions, versions, the pod pool): only while it is
  the active controller, so that two controllers never report the same pool twice.
- **The sidecar** exports its pod's figures: runtime processes by state, runtime restarts per version,
  whether the pod is ready and which version it serves.
- **The gateway** exports its own traffic: HTTP requests by route and status, and the invocations it
  makes by trigger.

Names follow the Prometheus conventions (``dormant_`` prefix, base units, ``_total`` on counters):
counters are declared here *without* ``_total`` because ``prometheus_client`` appends it itself (a name
declared with it would be exposed as ``..._total_total``); ``exposed_names`` says what a scrape shows.
Every process also exports ``prometheus_client``'s process and Python collectors (``process_*``,
``python_*``). ``_created`` series are turned off. OTLP metrics are not provided: Prometheus scrapes
each process's ``/metrics`` (an OpenTelemetry Collector's Prometheus receiver can forward them as OTLP).

This module imports none of Dormant's packages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

Kind = Literal["counter", "gauge", "histogram"]
Exporter = Literal["controller", "sidecar", "gateway"]

DURATION_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000,
)  # fmt: skip
"""The bounds of the runtimes' latency histogram (``dormant_runtime.stats.BOUNDS_MS``, pinned equal by
a unit test); ``function_duration_seconds`` uses them in seconds."""
DURATION_BUCKETS_S: tuple[float, ...] = tuple(b / 1000 for b in DURATION_BUCKETS_MS)
INIT_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120)
MIB = 1024 * 1024
MEMORY_BUCKETS_BYTES: tuple[float, ...] = tuple(float(MIB * 2**n) for n in range(4, 14))
"""16 MiB .. 8 GiB, doubling."""
HTTP_BUCKETS_S: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric family: ``name`` as given to ``prometheus_client`` (a counter's without ``_total``)."""

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    exporter: Exporter
    seed: str | None = None
    """The seed's name for it (000_8e3edc8caf6ed6ed.txt, "Required Metrics"); None: Dormant's own."""
    buckets: tuple[float, ...] = ()

    @property
    def exposed_names(self) -> tuple[str, ...]:
        """The sample names a scrape shows for this family."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "histogram":
            return (f"{self.name}_bucket", f"{self.name}_sum", f"{self.name}_count")
        return (self.name,)


_FN = ("service", "function", "version")
_VERSION = ("service", "version")

# ------------------------------------------------------------------ controller: per function
INVOCATIONS = MetricDef(
    "dormant_function_invocations",
    "counter",
    "Calls a function's runtimes answered (refusals at the concurrency limit are throttles instead).",
    _FN,
    "controller",
    "functions.invocations.total",
)
ERRORS = MetricDef(
    "dormant_function_errors",
    "counter",
    "Invocations answered with an error, by the wire error type (ValidationError, SystemError, ...).",
    (*_FN, "error_type"),
    "controller",
    "functions.invocations.errors.total",
)
THROTTLES = MetricDef(
    "dormant_function_throttles",
    "counter",
    "Calls refused with Throttled because the function was at its concurrency limit.",
    _FN,
    "controller",
    "functions.invocations.throttled.total",
)
COLD_STARTS = MetricDef(
    "dormant_function_cold_starts",
    "counter",
    "Runtime processes that loaded a version (each load is one cold start; pods keep runtimes warm).",
    _VERSION,
    "controller",
    "functions.invocations.cold_start.total",
)
DURATION = MetricDef(
    "dormant_function_duration_seconds",
    "histogram",
    "Time from a request's arrival at the runtime to its answer.",
    _FN,
    "controller",
    "function.duration.seconds",
    DURATION_BUCKETS_S,
)
INIT_DURATION = MetricDef(
    "dormant_function_init_duration_seconds",
    "histogram",
    "Time a runtime took from its load command to serving (imports, set-up, subscriptions).",
    _VERSION,
    "controller",
    "function.init.duration.seconds",
    INIT_BUCKETS_S,
)
MEMORY_USED = MetricDef(
    "dormant_function_memory_used_bytes",
    "histogram",
    "Resident memory of a runtime, sampled once per second per runtime while it answered calls.",
    _VERSION,
    "controller",
    "function.memory.used.bytes",
    MEMORY_BUCKETS_BYTES,
)
CONCURRENT = MetricDef(
    "dormant_function_concurrent_executions",
    "gauge",
    "Requests being handled now by a version's runtimes (as of their last one-second window).",
    _VERSION,
    "controller",
    "functions.concurrent.executions",
)
# ------------------------------------------------------------------ controller: the catalog
FUNCTIONS = MetricDef(
    "dormant_functions",
    "gauge",
    "Functions (services) with at least one registered version, not deleted.",
    (),
    "controller",
    "functions.count",
)
VERSIONS = MetricDef(
    "dormant_function_versions",
    "gauge",
    "Registered versions per function (service).",
    ("service",),
    "controller",
    "functions.versions.count",
)
RUNNERS_ACTIVE = MetricDef(
    "dormant_runners_active",
    "gauge",
    "Pods (runner nodes) seen by the catalog within the pod TTL.",
    (),
    "controller",
    "runners.active",
)
POOL_FREE = MetricDef(
    "dormant_pool_pods_free",
    "gauge",
    "Live pods holding no replica slot (free to claim one).",
    (),
    "controller",
)
POOL_CLAIMED = MetricDef(
    "dormant_pool_pods_claimed",
    "gauge",
    "Live pods holding a replica slot (serving it or loading its version).",
    (),
    "controller",
)
POOL_UNASSIGNED = MetricDef(
    "dormant_pool_slots_unassigned",
    "gauge",
    "Replica slots no pod holds under a live lease, by the base runtime their version needs: what a pool"
    " autoscaler scales pods on.",
    ("base_image",),
    "controller",
)
CONTROLLER_LEADER = MetricDef(
    "dormant_controller_leader",
    "gauge",
    "1 while this controller holds the leader lock (the active one), else 0.",
    (),
    "controller",
)
STATS_WINDOWS = MetricDef(
    "dormant_controller_stats_windows",
    "counter",
    "Stats windows (mesh/stats) this controller received from runtimes.",
    (),
    "controller",
)
# ------------------------------------------------------------------ sidecar
CONTAINERS = MetricDef(
    "dormant_runner_containers",
    "gauge",
    "Runtime processes of this pod by state: standby (warm), serving, draining.",
    ("state",),
    "sidecar",
    "runners.containers.count",
)
RESTARTS = MetricDef(
    "dormant_runtime_restarts",
    "counter",
    "Runtime processes of a version that exited unexpectedly and were restarted by this pod.",
    _VERSION,
    "sidecar",
)
POD_READY = MetricDef(
    "dormant_pod_ready",
    "gauge",
    "1 while this pod is ready (catalog reachable, runtime loaded and connected), else 0.",
    (),
    "sidecar",
)
POD_SERVING = MetricDef(
    "dormant_pod_serving",
    "gauge",
    "1 for the version this pod's slot points at, while it holds one.",
    _VERSION,
    "sidecar",
)
# ------------------------------------------------------------------ gateway
HTTP_REQUESTS = MetricDef(
    "dormant_gateway_http_requests",
    "counter",
    "HTTP requests the gateway answered, by route template, method and status code.",
    ("route", "method", "status"),
    "gateway",
)
HTTP_DURATION = MetricDef(
    "dormant_gateway_http_request_duration_seconds",
    "histogram",
    "Time the gateway took to answer an HTTP request, by route template and method.",
    ("route", "method"),
    "gateway",
    buckets=HTTP_BUCKETS_S,
)
GATEWAY_INVOCATIONS = MetricDef(
    "dormant_gateway_invocations",
    "counter",
    "Function calls the gateway made, by trigger (invoke, http, async, queue, stream) and outcome (ok or"
    " the error type).",
    ("service", "trigger", "outcome"),
    "gateway",
)

ALL: tuple[MetricDef, ...] = (
    INVOCATIONS,
    ERRORS,
    THROTTLES,
    COLD_STARTS,
    DURATION,
    INIT_DURATION,
    MEMORY_USED,
    CONCURRENT,
    FUNCTIONS,
    VERSIONS,
    RUNNERS_ACTIVE,
    POOL_FREE,
    POOL_CLAIMED,
    POOL_UNASSIGNED,
    CONTROLLER_LEADER,
    STATS_WINDOWS,
    CONTAINERS,
    RESTARTS,
    POD_READY,
    POD_SERVING,
    HTTP_REQUESTS,
    HTTP_DURATION,
    GATEWAY_INVOCATIONS,
)
BY_NAME: dict[str, MetricDef] = {d.name: d for d in ALL}

SEED_NAMES: dict[str, str] = {d.seed: d.name for d in ALL if d.seed is not None}
"""The seed's metric name -> Dormant's family name (a counter's exposed name adds ``_total``)."""


def exposed_names() -> frozenset[str]:
    """Every sample name Dormant's own families show in a scrape."""
    return frozenset(n for d in ALL for n in d.exposed_names)


# ------------------------------------------------------------------ building them


def new_registry(*, process: bool = True) -> CollectorRegistry:
    """A registry of one's own (never the global one), with the process and Python collectors."""
    # No ``_created`` series: they would double the series count and tell nothing here.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    registry = CollectorRegistry(auto_describe=True)
    if process:
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            registry.register(collector)
    return registry


def counter(d: MetricDef, registry: CollectorRegistry) -> Counter:
    _expect(d, "counter")
    return Counter(d.name, d.help, d.labels, registry=registry)


def gauge(d: MetricDef, registry: CollectorRegistry) -> Gauge:
    _expect(d, "gauge")
    return Gauge(d.name, d.help, d.labels, registry=registry)


def histogram(d: MetricDef, registry: CollectorRegistry) -> Histogram:
    _expect(d, "histogram")
    return Histogram(d.name, d.help, d.labels, registry=registry, buckets=d.buckets)


def counter_family(d: MetricDef) -> CounterMetricFamily:
    """An empty family for a custom collector (``add_metric(label_values, value)``)."""
    _expect(d, "counter")
    return CounterMetricFamily(d.name, d.help, labels=d.labels)


def gauge_family(d: MetricDef) -> GaugeMetricFamily:
    _expect(d, "gauge")
    return GaugeMetricFamily(d.name, d.help, labels=d.labels)


def histogram_family(d: MetricDef) -> HistogramMetricFamily:
    _expect(d, "histogram")
    return HistogramMetricFamily(d.name, d.help, labels=d.labels)


def histogram_buckets(d: MetricDef, counts: Sequence[float]) -> list[tuple[str, float]]:
    """Per-bucket counts (``counts[i]`` in ``d.buckets[i]``, plus one overflow bucket) as the cumulative
    ``(le, count)`` pairs ``HistogramMetricFamily.add_metric`` takes."""
    out: list[tuple[str, float]] = []
    running = 0.0
    bounds = [*(_le(b) for b in d.buckets), "+Inf"]
    for bound, count in zip(bounds, counts, strict=True):
        running += count
        out.append((bound, running))
    return out


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text exposition of ``registry`` and its content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _le(bound: float) -> str:
    # As prometheus_client's own histograms spell their bounds.
    return str(floatToGoString(bound))  # type: ignore[no-untyped-call]


def _expect(d: MetricDef, kind: Kind) -> None:
    if d.kind != kind:
        raise TypeError(f"{d.name} is a {d.kind}, not a {kind}")
