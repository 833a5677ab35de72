"""The pod's health and metrics: its health recorded in the catalog for ``dormant pods`` (always), and
``/metrics``, ``/healthz`` and ``/readyz`` on a small HTTP server of its own
(``dormant_telemetry.endpoint``) when it is given a port.

Readiness (``/readyz``, 200 only when every check passes):

- ``catalog``: the catalog database answers (one round trip, reused for a second);
- ``runtime``: with no slot, a warm standby runtime has done its imports (a claim can be served at
  once); with a slot, the runtime serving it has loaded the version and is connected to the broker (it
  says so over the control pipe, ``dormant._control``). The runtime's readiness is the pod's: a runtime
  is a child process with no port of its own.

Liveness (``/healthz``) only says the sidecar's event loop runs.

Metrics (``dormant_telemetry.metrics``, exporter ``sidecar``): runtime processes by state, runtime
restarts per version, whether the pod is ready and which version it serves. Per-function numbers come
from the controller, which receives every runtime's stats windows.

Every ``REPORT_S`` the pod's health summary (ready, the failing checks and why, runtimes by state,
restarts per version) is written to the catalog when it changed, for ``dormant pods`` and ``dormant
status``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from dormant_catalog import observed
from dormant_telemetry import metrics as m
from dormant_telemetry.endpoint import ObservabilityServer
from dormant_telemetry.health import CachedProbe, Check

from .pod import Pod
from .runtime import RuntimeProcess
from .tasks import stop_task

log = logging.getLogger("dormant.sidecar")

REPORT_S = 2.0
STATES = ("standby", "starting", "serving", "draining")


def runtime_states(pod: Pod) -> dict[str, int]:
    """The pod's runtime processes by state (every state present, 0 when none)."""
    counts = dict.fromkeys(STATES, 0)
    supervisor = pod.supervisor
    if supervisor is None:
        return counts
    for child in supervisor.children:
        if not child.running:
            continue
        if child is supervisor.standby:
            counts["standby"] += 1
        elif child.draining:
            counts["draining"] += 1
        elif child is pod.runtime:
            counts["serving"] += 1
        else:
            counts["starting"] += 1
    return counts


def runtime_check(pod: Pod) -> Check:
    """Whether the pod's runtime side can serve: see the module docstring."""
    claim = pod.claim
    if claim is None:
        standby = pod.supervisor.standby if pod.supervisor is not None else None
        if standby is not None and standby.standing_by:
            return Check("runtime", True, "no slot; a warm standby runtime waits for one")
        return Check("runtime", False, "no slot; the standby runtime is still starting")
    what = f"{claim.app_name} v{claim.version}"
    runtime: RuntimeProcess | None = pod.runtime
    if runtime is None or not runtime.running:
        return Check("runtime", False, f"{what}: no runtime serves it yet (loading or restarting)")
    if not runtime.ready:
        return Check("runtime", False, f"{what}: the runtime is loading it")
    if not runtime.connected:
        return Check("runtime", False, f"{what}: the runtime lost its broker connection")
    return Check("runtime", True, f"serving {what} in runtime {runtime.pid}")


class PodCollector(Collector):
    """The pod's metrics, read from the pod at scrape time."""

    def __init__(self, observer: PodObserver) -> None:
        self._observer = observer

    def collect(self) -> Iterator[Metric]:
        pod = self._observer.pod
        containers = m.gauge_family(m.CONTAINERS)
        for state, count in runtime_states(pod).items():
            containers.add_metric([state], count)
        yield containers
        restarts = m.counter_family(m.RESTARTS)
        for (service, version), count in sorted(pod.restarts.items()):
            restarts.add_metric([service, str(version)], count)
        yield restarts
        ready = m.gauge_family(m.POD_READY)
        ready.add_metric([], 1 if self._observer.last_ready else 0)
        yield ready
        serving = m.gauge_family(m.POD_SERVING)
        claim = pod.claim
        if claim is not None:
            serving.add_metric([claim.app_name, str(claim.version)], 1)
        yield serving


class PodObserver:
    """Reports the pod's health to the catalog while the pod runs, and serves its endpoints on ``port``
    (None: no server)."""

    def __init__(self, pod: Pod, *, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.pod = pod
        self.last_ready = False
        self._catalog = CachedProbe("catalog", self._ping)
        self.registry = m.new_registry()
        self.registry.register(PodCollector(self))
        self.server: ObservabilityServer | None = None
        if port is not None:
            self.server = ObservabilityServer(
                "sidecar",
                registry=self.registry,
                ready=self.checks,
                before_scrape=self._refresh,
                host=host,
                port=port,
            )
        self._reporter: asyncio.Task[None] | None = None
        self._reported: dict[str, Any] | None = None

    async def _ping(self) -> None:
        catalog = self.pod.catalog
        if catalog is None:
            raise ConnectionError("not connected to the catalog yet")
        await catalog.db.run(observed.ping)

    async def checks(self) -> Sequence[Check]:
        found = [await self._catalog(), runtime_check(self.pod)]
        self.last_ready = all(c.ok for c in found)
        return found

    async def _refresh(self) -> None:
        await self.checks()  # dormant_pod_ready as of this scrape

    def summary(self, checks: Sequence[Check]) -> dict[str, Any]:
        """What goes to the catalog: stable while nothing changes (no timings), so it is written only
        when something did."""
        restarts: dict[str, dict[str, int]] = {}
        for (service, version), count in sorted(self.pod.restarts.items()):
            restarts.setdefault(service, {})[str(version)] = count
        return {
            "ready": all(c.ok for c in checks),
            "failing": {c.name: c.detail for c in checks if not c.ok},
            "runtimes": runtime_states(self.pod),
            "restarts": restarts,
        }

    async def start(self) -> None:
        if self.server is not None:
            await self.server.start()
        self._reporter = asyncio.create_task(self._report(), name="pod-health-report")

    async def close(self) -> None:
        if self._reporter is not None:
            await stop_task(self._reporter)  # not a bare cancel(): see tasks.py
            self._reporter = None
        if self.server is not None:
            await self.server.close()

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(REPORT_S)
            catalog = self.pod.catalog
            try:
                summary = self.summary(await self.checks())
                if catalog is None or summary == self._reported:
                    continue
                await asyncio.wait_for(
                    catalog.db.run(observed.report_pod_health, self.pod.pod_id, summary), 5
                )
                self._reported = summary
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the catalog being away is what the check reports already
                log.debug("could not record the pod's health: %s", exc)
