"""Health checks of a Dormant process, as Kubernetes probes read them.

Two questions, two endpoints (served by ``dormant_telemetry.endpoint`` on the controller and the
sidecar, and by the gateway on its own HTTP server):

- ``/healthz`` (liveness): is the process working at all? It answers while the event loop runs (and
  the process's own liveness checks, if any, pass). It never depends on the broker or the database: a
  restart would not bring those back, so a liveness probe must not restart a process for their sake.
- ``/readyz`` (readiness): can it do its work now? Each component lists its checks (broker connected,
  database reachable, leader lock held, runtime loaded ...); 200 when all pass, 503 otherwise.

The body is JSON either way: ``{"status": "ok" | "unavailable", "component": ..., "checks": {name:
{"ok": bool, "detail": str}}}``; ``detail`` says what was found (never a secret or a URL's password).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

CHECK_TIMEOUT_S = 2.0
"""How long one check that reaches out (a database round trip) may take before it counts as failed."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


Checks = Callable[[], Awaitable[Sequence[Check]]]
"""An async function returning the current checks of a process."""


def report(component: str, checks: Sequence[Check]) -> tuple[int, dict[str, Any]]:
    """The HTTP status (200 or 503) and JSON body for ``checks``."""
    ok = all(c.ok for c in checks)
    body = {
        "status": "ok" if ok else "unavailable",
        "component": component,
        "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks},
    }
    return (200 if ok else 503), body


async def probe(
    name: str, work: Callable[[], Awaitable[object]], *, timeout_s: float = CHECK_TIMEOUT_S
) -> Check:
    """Run ``work`` (a round trip to a dependency) within ``timeout_s``: ok, or failed with why."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(work(), timeout_s)
    except TimeoutError:
        return Check(name, False, f"no answer within {timeout_s:g} s")
    except Exception as exc:
        return Check(name, False, f"{type(exc).__name__}: {_first_line(str(exc))}")
    return Check(name, True, f"answered in {(time.monotonic() - started) * 1000:.0f} ms")


class CachedProbe:
    """A ``probe`` whose result is reused for ``ttl_s``, so frequent probes (several probers, a busy
    Prometheus) cost one round trip per ``ttl_s`` at most."""

    def __init__(
        self,
        name: str,
        work: Callable[[], Awaitable[object]],
        *,
        ttl_s: float = 1.0,
        timeout_s: float = CHECK_TIMEOUT_S,
    ) -> None:
        self._name = name
        self._work = work
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._last: tuple[float, Check] | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> Check:
        async with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self._ttl_s:
                return self._last[1]
            check = await probe(self._name, self._work, timeout_s=self._timeout_s)
            self._last = (time.monotonic(), check)
            return check


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line[:200]
