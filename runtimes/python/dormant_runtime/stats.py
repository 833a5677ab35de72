"""Per-version call statistics: one-second windows published to ``mesh/stats/{svc}/v{N}/{podId}``.

The serving path only counts (``mark_start`` when a request arrives, ``CallStats.record`` when it is
answered: a few additions into the current window, no lock, no I/O); a timer task takes the window each
second and publishes it with QoS 0 over its own connection. A window: ``{"service", "version", "pod",
"at", "seconds", "calls", "ok", "errors": {type: n}, "latency": {"le": [ms...], "counts": [n...]},
"peakRssMb"}`` where ``counts`` has one more entry than ``le`` (the overflow bucket); ``errors`` counts
``Throttled`` refusals too, and ``peakRssMb`` is the largest resident set the process had. The rollout
controller and the autoscaler read these fields.

For the controller's Prometheus metrics (``dormant_telemetry.metrics``) a window also carries, keeping
the fields above as they were: ``functions`` (per function with calls in the window: ``{"calls", "ok",
"errors": {type: n}, "counts": [n...], "sumMs"}``, the histogram over the same ``le`` bounds and the sum
of latencies, both without ``Throttled`` refusals, which take no time; calls naming no function of the
service count under ``(unknown)``); ``started`` (when this runtime
received its load command, epoch s: with the pod it names one runtime process, so the controller counts
each cold start once however many windows it sees), ``initSeconds`` (load command to serving),
``inFlight`` (requests being handled when the window closed) and ``rssBytes`` (the resident set then).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import time
from collections.abc import Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import orjson

from dormant import wire
from dormant.transport import Message, TransportError, new_transport

from .limits import peak_rss_mb

log = logging.getLogger("dormant.runtime")

BOUNDS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000, 60000)
_STARTED: ContextVar[float | None] = ContextVar("dormant_call_started", default=None)


def mark_start() -> None:
    """Note when the current request (this task) arrived."""
    _STARTED.set(time.monotonic())


def started_at() -> float | None:
    """When the current call's handling began (``time.monotonic()``), or None outside a call."""
    return _STARTED.get()


THROTTLED = "Throttled"
UNKNOWN_FUNCTION = "(unknown)"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """The process's resident set now (``/proc/self/statm``), or None where ``/proc`` does not say."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def _error_type(body_json: bytes) -> str:
    try:
        body = orjson.loads(body_json)
    except orjson.JSONDecodeError:
        return "SystemError"
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else "SystemError"


class _FunctionWindow:
    """One function's counters in the current window."""

    __slots__ = ("calls", "counts", "errors", "ok", "sum_ms")

    def __init__(self) -> None:
        self.calls = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self.sum_ms = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "ok": self.ok,
            "errors": self.errors,
            "counts": self.counts,
            "sumMs": round(self.sum_ms, 3),
        }


class CallStats:
    """Counters of the current window."""

    def __init__(self) -> None:
        self._reset()
        self._opened = time.time()
        self.started: float | None = None
        """When this runtime received its load command (epoch s); set by whoever runs it."""
        self.init_seconds: float | None = None
        """How long it took from the load command to serving."""
        self.in_flight: Callable[[], int] | None = None
        """The requests being handled now (read when a window closes)."""
        self.declared: frozenset[str] | None = None
        """The service's functions; calls naming another are counted under ``UNKNOWN_FUNCTION`` (a
        caller choosing names must not choose how many series the controller exports)."""

    def _reset(self) -> None:
        self.calls = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.counts = [0] * (len(BOUNDS_MS) + 1)
        self.functions: dict[str, _FunctionWindow] = {}

    def record(self, ok: bool, body_json: bytes, function: str = "") -> None:
        """Count one answered call of ``function`` (latency since ``mark_start`` in this task)."""
        started = _STARTED.get()
        latency_ms = (time.monotonic() - started) * 1000 if started is not None else 0.0
        bucket = bisect.bisect_left(BOUNDS_MS, latency_ms)
        if self.declared is not None and function not in self.declared:
            function = UNKNOWN_FUNCTION
        fn = self.functions.get(function)
        if fn is None:
            fn = self.functions[function] = _FunctionWindow()
        self.calls += 1
        fn.calls += 1
        if ok:
            self.ok += 1
            fn.ok += 1
        else:
            kind = _error_type(body_json)
            self.errors[kind] = self.errors.get(kind, 0) + 1
            fn.errors[kind] = fn.errors.get(kind, 0) + 1
            if kind == THROTTLED:  # refused before it ran: not in the function's duration
                self.counts[bucket] += 1
                return
        self.counts[bucket] += 1
        fn.counts[bucket] += 1
        fn.sum_ms += latency_ms

    def take(self, service: str, version: int, pod_id: str) -> dict[str, Any]:
        """The window so far, and start a new one."""
        now = time.time()
        window = {
            "service": service,
            "version": version,
            "pod": pod_id,
            "at": self._opened,
            "seconds": round(now - self._opened, 3),
            "calls": self.calls,
            "ok": self.ok,
            "errors": self.errors,
            "latency": {"le": list(BOUNDS_MS), "counts": self.counts},
            "peakRssMb": peak_rss_mb(),
            "functions": {name: fn.to_json() for name, fn in self.functions.items()},
            "started": self.started,
            "initSeconds": self.init_seconds,
            "inFlight": self.in_flight() if self.in_flight is not None else 0,
            "rssBytes": resident_bytes(),
        }
        self._reset()
        self._opened = now
        return window


class StatsPublisher:
    """Publishes ``stats`` every ``interval_s`` until cancelled."""

    def __init__(
        self,
        stats: CallStats,
        *,
        broker_url: str,
        service: str,
        version: int,
        pod_id: str,
        client_id: str,
        interval_s: float = 1.0,
    ) -> None:
        self.stats = stats
        self.broker_url = broker_url
        self.topic = wire.stats_topic(service, version, pod_id)
        self.service, self.version, self.pod_id = service, version, pod_id
        self.client_id = client_id
        self.interval_s = interval_s

    async def run(self) -> None:
        while True:
            transport = new_transport(self.broker_url, client_id=self.client_id)
            try:
                await transport.connect()
                while True:
                    await asyncio.sleep(self.interval_s)
                    window = self.stats.take(self.service, self.version, self.pod_id)
                    await transport.publish(Message(self.topic, orjson.dumps(window), qos=0))
            except TransportError as exc:
                log.debug("stats connection lost (%s); reconnecting", exc)
            finally:
                with contextlib.suppress(Exception):
                    await transport.close()
            await asyncio.sleep(self.interval_s)
