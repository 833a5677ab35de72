"""Per-version call statistics: one-second windows published to ``mesh/stats/{svc}/v{N}/{podId}``.

The serving path only counts (``mark_start`` when a request arrives, ``CallStats.record`` when it is
answered); a timer task takes the window each second and publishes it with QoS 0 over its own
connection. A window: ``{"service", "version", "pod", "at", "seconds", "calls", "ok",
"errors": {type: n}, "latency": {"le": [ms...], "counts": [n...]}, "peakRssMb"}`` where ``counts`` has
one more entry than ``le`` (the overflow bucket); ``errors`` counts ``Throttled`` refusals too, and
``peakRssMb`` is the largest resident set the process had.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from contextvars import ContextVar
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


def _error_type(body_json: bytes) -> str:
    try:
        body = orjson.loads(body_json)
    except orjson.JSONDecodeError:
        return "SystemError"
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else "SystemError"


class CallStats:
    """Counters of the current window."""

    def __init__(self) -> None:
        self._reset()
        self._opened = time.time()

    def _reset(self) -> None:
        self.calls = 0
        self.ok = 0
        self.errors: dict[str, int] = {}
        self.counts = [0] * (len(BOUNDS_MS) + 1)

    def record(self, ok: bool, body_json: bytes) -> None:
        """Count one answered call (latency since ``mark_start`` in this task)."""
        started = _STARTED.get()
        latency_ms = (time.monotonic() - started) * 1000 if started is not None else 0.0
        self.calls += 1
        if ok:
            self.ok += 1
        else:
            kind = _error_type(body_json)
            self.errors[kind] = self.errors.get(kind, 0) + 1
        self.counts[bisect.bisect_left(BOUNDS_MS, latency_ms)] += 1

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
