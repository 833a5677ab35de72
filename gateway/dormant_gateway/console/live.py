"""The console's live figures: the one-second windows runtimes publish on ``mesh/stats/{svc}/v{N}/{pod}``,
kept for a short while and summed per version.

``LiveStats`` holds the windows of the last ``KEEP_S`` seconds by the time they arrived (this process's
clock: the pods' clocks are not compared with it). A figure at second *t* sums the windows that arrived
in the ``SPAN_S`` seconds up to *t*: a pod publishes one window a second, so every span holds one
window per pod, however their timers are phased, and the figures do not flicker from second to second.
Error rates are counted as the rollout controller counts them (``VersionStats``: errors a caller caused
are not held against a version).

``StatsFeed`` is the gateway's subscription to ``mesh/stats/+/+/+``: one MQTT connection of its own,
opened when the console is first used and kept until the gateway stops. The broker may refuse the
subscription (an account without the gateway's rule): the feed then says so, and the console shows the
catalog's figures without the live ones.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from dormant import wire
from dormant.transport import NOT_AUTHORIZED, TransportError, new_transport
from dormant_catalog.rollouts.thresholds import VersionStats

log = logging.getLogger("dormant.gateway.console")

KEEP_S = 120.0
"""How long windows are kept (the charts show the last ``HISTORY_S`` seconds)."""
HISTORY_S = 60
SPAN_S = 5
"""Each figure sums the windows that arrived in this many seconds."""
MAX_WINDOWS_PER_VERSION = 20_000
"""A bound on memory whatever publishes: about 160 pods of one version for ``KEEP_S``."""
RETRY_REFUSED_S = 30.0


@dataclass(frozen=True, slots=True)
class Figures:
    """Calls per second, error rate and p99 of one version over one span."""

    calls: int
    errors: int
    """Calls that failed through no fault of their caller (what a rollout judges)."""
    rate: float
    error_rate: float
    p99_ms: float | None
    """None without calls; ``inf`` when the 99th percentile is past the histogram's last bound."""

    def to_json(self) -> dict[str, Any]:
        p99: float | str | None = self.p99_ms
        if self.p99_ms is not None and math.isinf(self.p99_ms):
            p99 = "inf"
        return {
            "calls": self.calls,
            "errors": self.errors,
            "rate": round(self.rate, 2),
            "errorRate": round(self.error_rate, 4),
            "p99Ms": p99,
        }


def figures(stats: VersionStats, seconds: float) -> Figures:
    return Figures(
        calls=stats.calls,
        errors=stats.failed,
        rate=stats.calls / seconds if seconds > 0 else 0.0,
        error_rate=stats.error_rate,
        p99_ms=stats.percentile_ms(0.99) if stats.calls else None,
    )


class LiveStats:
    """Windows by (service, version), as they arrived."""

    def __init__(self, *, keep_s: float = KEEP_S) -> None:
        self._keep_s = keep_s
        self._windows: dict[tuple[str, int], collections.deque[tuple[float, str, dict[str, Any]]]] = {}

    def add(self, topic: str, payload: bytes, *, now: float | None = None) -> bool:
        """Keep one window; False when the topic or the payload is not a stats window."""
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
        windows = self._windows.setdefault(
            (source.service, source.version), collections.deque(maxlen=MAX_WINDOWS_PER_VERSION)
        )
        windows.append((now, source.pod_id, window))
        self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        cutoff = now - self._keep_s
        for key in list(self._windows):
            windows = self._windows[key]
            while windows and windows[0][0] < cutoff:
                windows.popleft()
            if not windows:
                del self._windows[key]

    def service(
        self, service: str, *, now: float | None = None, history_s: int = HISTORY_S, span_s: int = SPAN_S
    ) -> dict[int, dict[str, Any]]:
        """Per version of ``service`` that reported in the last ``history_s`` seconds: ``now`` (the
        figures of the last ``span_s`` seconds), ``total`` (of the last ``history_s``), the ``pods``
        that reported within ``span_s``, and ``series``: one point a second, each the figures of the
        ``span_s`` seconds up to it (``t`` in epoch seconds)."""
        now = time.time() if now is None else now
        self._prune(now)
        end = math.floor(now)
        first = end - history_s + 1
        out: dict[int, dict[str, Any]] = {}
        for (svc, version), windows in sorted(self._windows.items()):
            if svc != service:
                continue
            seconds: dict[int, VersionStats] = {}
            total = VersionStats()
            pods: set[str] = set()
            for at, pod, window in windows:
                second = math.floor(at)
                if second < first - span_s:
                    continue
                seconds.setdefault(second, VersionStats()).add_window(window)
                if second >= first:
                    total.add_window(window)
                if at > now - span_s:
                    pods.add(pod)
            if not seconds:
                continue
            series = []
            for t in range(first, end + 1):
                span = VersionStats()
                for second in range(t - span_s + 1, t + 1):
                    bucket = seconds.get(second)
                    if bucket is not None:
                        span.merge(bucket)
                series.append({"t": t, **figures(span, span_s).to_json()})
            out[version] = {
                "now": series[-1] if series else figures(VersionStats(), span_s).to_json(),
                "total": figures(total, history_s).to_json(),
                "pods": sorted(pods),
                "series": series,
            }
        return out


class StatsFeed:
    """The subscription that fills a ``LiveStats``; ``state`` says how it goes, for the console."""

    def __init__(self, broker_url: str, stats: LiveStats) -> None:
        self.broker_url = broker_url
        self.stats = stats
        self.client_id = f"dormant-gateway-console-{uuid.uuid4().hex[:12]}"
        self.state = "connecting"
        """connecting | live | refused (the broker does not let this account read mesh/stats) | lost"""
        self.detail: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="console-stats-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def to_json(self) -> dict[str, Any]:
        return {"state": self.state, "detail": self.detail, "spanS": SPAN_S, "historyS": HISTORY_S}

    async def _run(self) -> None:
        delay = 0.5
        while True:
            transport = new_transport(self.broker_url, client_id=self.client_id)
            retry = delay
            connected = subscribed = False
            try:
                await transport.connect()
                connected = True
                await transport.subscribe([wire.stats_filter()], qos=0)
                subscribed = True
                self.state, self.detail = "live", None
                delay = 0.5
                async for message in transport.messages():
                    self.stats.add(message.topic, message.payload)
            except TransportError as exc:
                if connected and not subscribed and exc.reason == NOT_AUTHORIZED:
                    # Not an outage: the broker's rules do not let this account read the windows.
                    self.state = "refused"
                    self.detail = "the broker does not let the gateway's account read mesh/stats"
                    retry = RETRY_REFUSED_S
                else:
                    self.state = "lost"
                    self.detail = (
                        "the broker connection was lost; reconnecting"
                        if connected
                        else "the gateway cannot connect to the broker; retrying"
                    )
                    delay = min(delay * 2, 10.0)
                log.warning("console stats feed: %s (%s); retrying in %gs", self.state, exc, retry)
            finally:
                with contextlib.suppress(Exception):
                    await transport.close()
            await asyncio.sleep(retry)
