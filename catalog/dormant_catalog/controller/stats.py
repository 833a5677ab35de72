"""``StatsBook``: the per-second windows runtimes publish on ``mesh/stats/{svc}/v{N}/{podId}``, kept
for a while and summed per version on demand (since a step began, or over the last seconds)."""

from __future__ import annotations

import collections
import time
from typing import Any

import orjson

from dormant import wire

from ..rollouts.thresholds import VersionStats

KEEP_S = 900.0


class StatsBook:
    def __init__(self, *, keep_s: float = KEEP_S) -> None:
        self._keep_s = keep_s
        self._windows: dict[tuple[str, int], collections.deque[tuple[float, str, dict[str, Any]]]] = {}

    def add(self, topic: str, payload: bytes, *, now: float | None = None) -> bool:
        """Record one window; False when the topic or payload is not a stats window."""
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
        key = (source.service, source.version)
        windows = self._windows.setdefault(key, collections.deque())
        windows.append((now, source.pod_id, window))
        while windows and windows[0][0] < now - self._keep_s:
            windows.popleft()
        return True

    def since(self, service: str, version: int, cutoff: float) -> VersionStats:
        """The sum of the windows of ``service`` v``version`` received after ``cutoff`` (epoch s)."""
        total = VersionStats()
        for at, _, window in self._windows.get((service, version), ()):
            if at > cutoff:
                total.add_window(window)
        return total

    def recent(self, service: str, seconds: float = 10.0) -> dict[int, tuple[VersionStats, set[str]]]:
        """Per version of ``service``: its numbers over the last ``seconds`` and the pods reporting."""
        cutoff = time.time() - seconds
        out: dict[int, tuple[VersionStats, set[str]]] = {}
        for (svc, version), windows in self._windows.items():
            if svc != service:
                continue
            stats, pods = VersionStats(), set()
            for at, pod, window in windows:
                if at > cutoff:
                    stats.add_window(window)
                    pods.add(pod)
            if pods:
                out[version] = (stats, pods)
        return out
