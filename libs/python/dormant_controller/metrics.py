"""``FunctionMetrics``: the per-function Prometheus metrics, summed from the runtimes' stats windows.

Every runtime publishes a one-second window on ``mesh/stats/{svc}/v{N}/{pod}`` (``dormant_runtime.stats``
says what one holds); the active controller receives them all (its ``StatsBook`` keeps them for the
rollouts and the autoscaler) and adds each to the cumulative counters here, which ``/metrics`` shows
(``dormant_telemetry.metrics`` names them, exporter ``controller``):

- invocations, errors by wire error type and throttles per service, function and version: a window's
  per-function ``calls`` less its ``Throttled`` refusals, its other error types, and its refusals;
- the duration histogram per function from the window's bucket counts and latency sum (re-bucketed onto
  ``DURATION_BUCKETS_MS`` when a runtime used other bounds);
- cold starts and the init duration per version: a runtime is named by its pod and ``started`` (when it
  got its load command); the first window of a runtime that started within ``COLD_START_RECENT_S`` counts
  one cold start and its ``initSeconds``. Runtimes already running when this controller starts (or
  becomes active) are not counted again;
- memory: one observation of a runtime's resident set per window in which it answered calls;
- concurrent executions per version: the sum of the ``inFlight`` of each pod's latest window, over the
  pods heard from within ``STALE_S``.

Windows of runtimes older than these fields (no ``functions``) count their calls and errors under
``function=""``, and no duration. Counters start at zero when the process starts, as Prometheus expects
of counters (``rate()`` handles the reset); only the active controller receives windows, so scrape every
controller and sum.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from dormant import wire
from dormant_telemetry import metrics as m

THROTTLED = "Throttled"
COLD_START_RECENT_S = 60.0
"""A runtime first heard of more than this long after its load command is not counted as a cold start
(this controller started, or took over, after it)."""
STALE_S = 5.0
"""A pod whose last window is older than this no longer counts towards concurrent executions."""
FORGET_S = 900.0
"""Runtimes not heard from for this long are forgotten (their cold start was counted long ago)."""
MAX_LABEL = 64

FnKey = tuple[str, str, str]
"""(service, function, version)"""
VersionKey = tuple[str, str]
"""(service, version)"""


@dataclass
class _Histogram:
    counts: list[float]
    sum: float = 0.0

    @classmethod
    def empty(cls, d: m.MetricDef) -> _Histogram:
        return cls([0.0] * (len(d.buckets) + 1))

    def observe(self, bounds: Sequence[float], value: float) -> None:
        self.counts[bisect.bisect_left(bounds, value)] += 1
        self.sum += value


@dataclass
class _Totals:
    invocations: dict[FnKey, float] = field(default_factory=dict)
    errors: dict[tuple[str, str, str, str], float] = field(default_factory=dict)
    throttles: dict[FnKey, float] = field(default_factory=dict)
    duration: dict[FnKey, _Histogram] = field(default_factory=dict)
    cold_starts: dict[VersionKey, float] = field(default_factory=dict)
    init: dict[VersionKey, _Histogram] = field(default_factory=dict)
    memory: dict[VersionKey, _Histogram] = field(default_factory=dict)


def _label(value: object) -> str:
    return str(value)[:MAX_LABEL]


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


class FunctionMetrics(Collector):
    """Feed it every stats message (``add``); register it in a registry to export the totals."""

    def __init__(self) -> None:
        self._totals = _Totals()
        self._runtimes: dict[tuple[str, int, str, float], float] = {}
        """(service, version, pod, started) -> when last heard from."""
        self._in_flight: dict[tuple[str, int, str], tuple[float, float]] = {}
        """(service, version, pod) -> (when heard, requests in flight then)."""
        self._rebucket: dict[tuple[float, ...], list[int]] = {}
        self.windows = 0
        """Windows received."""
        self._forgotten_at = 0.0

    # ------------------------------------------------------------------ feeding

    def add(self, topic: str, payload: bytes, *, now: float | None = None) -> bool:
        """Count one window; False when the message is not a stats window."""
        source = wire.parse_stats_topic(topic)
        if source is None:
            return False
        try:
            window = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return False
        if not isinstance(window, dict):
            return False
        now = time.time() if now is None else now
        self.windows += 1
        service, version = _label(source.service), str(source.version)
        latency = window.get("latency") if isinstance(window.get("latency"), dict) else {}
        mapping = self._mapping(latency.get("le") if isinstance(latency, dict) else None)
        functions = window.get("functions")
        if isinstance(functions, dict):
            for name, numbers in functions.items():
                if isinstance(numbers, dict):
                    self._add_function(service, _label(name), version, numbers, mapping)
        else:  # a runtime from before per-function numbers
            self._add_function(service, "", version, {**window, "counts": None}, mapping)
        self._add_runtime(source.service, source.version, source.pod_id, window, now)
        in_flight = window.get("inFlight")
        if isinstance(in_flight, int | float) and not isinstance(in_flight, bool):
            self._in_flight[(source.service, source.version, source.pod_id)] = (now, float(in_flight))
        if now - self._forgotten_at > 60:
            self._forget(now)
        return True

    def _mapping(self, bounds: Any) -> list[int] | None:
        """For each bucket of a window (its ``le`` bounds in ms, then the overflow), the index of the
        exported bucket it falls in; None when the window has no readable bounds."""
        if not isinstance(bounds, list) or not all(isinstance(b, int | float) for b in bounds):
            return None
        key = tuple(float(b) for b in bounds)
        found = self._rebucket.get(key)
        if found is None:
            ours = m.DURATION_BUCKETS_MS
            found = [bisect.bisect_left(ours, b) for b in key] + [len(ours)]
            if len(self._rebucket) < 16:
                self._rebucket[key] = found
        return found

    def _add_function(
        self, service: str, function: str, version: str, numbers: dict[str, Any], mapping: list[int] | None
    ) -> None:
        t = self._totals
        key = (service, function, version)
        errors = numbers.get("errors") if isinstance(numbers.get("errors"), dict) else {}
        assert isinstance(errors, dict)
        throttled = _number(errors.get(THROTTLED))
        calls = _number(numbers.get("calls"))
        t.invocations[key] = t.invocations.get(key, 0.0) + max(0.0, calls - throttled)
        t.throttles[key] = t.throttles.get(key, 0.0) + throttled  # a series from the first window on
        for kind, count in errors.items():
            if kind == THROTTLED:
                continue
            error_key = (*key, _label(kind))
            t.errors[error_key] = t.errors.get(error_key, 0.0) + _number(count)
        counts, sum_ms = numbers.get("counts"), numbers.get("sumMs")
        if mapping is None or not isinstance(counts, list) or len(counts) != len(mapping):
            return
        histogram = t.duration.get(key)
        if histogram is None:
            histogram = t.duration[key] = _Histogram.empty(m.DURATION)
        for index, count in zip(mapping, counts, strict=True):
            histogram.counts[index] += _number(count)
        histogram.sum += _number(sum_ms) / 1000

    def _add_runtime(self, service: str, version: int, pod: str, window: dict[str, Any], now: float) -> None:
        t = self._totals
        key = (_label(service), str(version))
        rss = window.get("rssBytes")
        if _number(window.get("calls")) > 0 and isinstance(rss, int) and rss > 0:
            memory = t.memory.get(key)
            if memory is None:
                memory = t.memory[key] = _Histogram.empty(m.MEMORY_USED)
            memory.observe(m.MEMORY_USED.buckets, float(rss))
        started, init_s = window.get("started"), window.get("initSeconds")
        if not isinstance(started, int | float) or not isinstance(init_s, int | float):
            return  # an older runtime, or one not serving yet
        runtime = (service, version, pod, float(started))
        seen = runtime in self._runtimes
        self._runtimes[runtime] = now
        if seen:
            return
        opened = window.get("at")
        if not isinstance(opened, int | float) or opened - started > COLD_START_RECENT_S:
            return
        t.cold_starts[key] = t.cold_starts.get(key, 0.0) + 1
        init = t.init.get(key)
        if init is None:
            init = t.init[key] = _Histogram.empty(m.INIT_DURATION)
        init.observe(m.INIT_DURATION.buckets, float(init_s))

    def _forget(self, now: float) -> None:
        self._forgotten_at = now
        for runtime in [r for r, at in self._runtimes.items() if now - at > FORGET_S]:
            del self._runtimes[runtime]
        for pod in [p for p, (at, _) in self._in_flight.items() if now - at > FORGET_S]:
            del self._in_flight[pod]

    # ------------------------------------------------------------------ exporting

    def concurrent(self, *, now: float | None = None) -> dict[VersionKey, float]:
        """Requests in flight per (service, version), over the pods heard from within ``STALE_S``."""
        now = time.time() if now is None else now
        out: dict[VersionKey, float] = {}
        for (service, version, _), (at, count) in self._in_flight.items():
            if now - at <= STALE_S:
                key = (_label(service), str(version))
                out[key] = out.get(key, 0.0) + count
        return out

    def collect(self) -> Iterator[Metric]:
        t = self._totals
        yield _counter(m.INVOCATIONS, t.invocations)
        yield _counter(m.ERRORS, t.errors)
        yield _counter(m.THROTTLES, t.throttles)
        yield _counter(m.COLD_STARTS, t.cold_starts)
        yield _histogram(m.DURATION, t.duration)
        yield _histogram(m.INIT_DURATION, t.init)
        yield _histogram(m.MEMORY_USED, t.memory)
        concurrent = m.gauge_family(m.CONCURRENT)
        for key, value in sorted(self.concurrent().items()):
            concurrent.add_metric(list(key), value)
        yield concurrent


def _counter(d: m.MetricDef, values: dict[Any, float]) -> Metric:
    family = m.counter_family(d)
    for key, value in sorted(values.items()):
        family.add_metric(list(key), value)
    return family


def _histogram(d: m.MetricDef, values: dict[Any, _Histogram]) -> Metric:
    family = m.histogram_family(d)
    for key, histogram in sorted(values.items()):
        family.add_metric(list(key), m.histogram_buckets(d, histogram.counts), histogram.sum)
    return family
