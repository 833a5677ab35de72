"""The controller's health and metrics endpoints: ``/metrics``, ``/healthz`` and ``/readyz`` on a small
HTTP server (``dormant_telemetry.endpoint``), started by ``dormant controller --metrics-port``.

Readiness (``/readyz``, 200 only when every check passes):

- ``leader``: this controller holds the leader lock (it is the active one). A standby controller is
  alive but not ready: it does no work until the active one goes;
- ``mqtt``: it is connected to the broker (it publishes route tables and reads stats through it);
- ``database``: the catalog answers (one round trip on a connection of the endpoint's own, reused for a
  second).

Metrics: the per-function families of ``FunctionMetrics`` (``metrics``), and, while this controller is
the active one, the catalog's figures (functions, versions, the pod pool, unassigned replica slots),
read at most every ``FIGURES_TTL_S`` when scraped; ``dormant_controller_leader`` says which controller
is active, so that two controllers never report the pool twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from dormant_catalog import observed
from dormant_catalog.db import Database
from dormant_telemetry import metrics as m
from dormant_telemetry.endpoint import ObservabilityServer
from dormant_telemetry.health import CachedProbe, Check

from .process import Controller

FIGURES_TTL_S = 2.0


class CatalogCollector(Collector):
    """The catalog's figures and the controller's own gauges."""

    def __init__(self, observer: ControllerObserver) -> None:
        self._observer = observer

    def collect(self) -> Iterator[Metric]:
        controller = self._observer.controller
        figures = self._observer.figures if controller.active.is_set() else None
        functions = m.gauge_family(m.FUNCTIONS)
        versions = m.gauge_family(m.VERSIONS)
        active = m.gauge_family(m.RUNNERS_ACTIVE)
        free = m.gauge_family(m.POOL_FREE)
        claimed = m.gauge_family(m.POOL_CLAIMED)
        unassigned = m.gauge_family(m.POOL_UNASSIGNED)
        if figures is not None:
            functions.add_metric([], len(figures.versions))
            for service, count in figures.versions.items():
                versions.add_metric([service], count)
            active.add_metric([], figures.pods_active)
            free.add_metric([], figures.pods_free)
            claimed.add_metric([], figures.pods_claimed)
            for image, count in figures.unassigned.items():
                unassigned.add_metric([image], count)
        yield from (functions, versions, active, free, claimed, unassigned)
        leader = m.gauge_family(m.CONTROLLER_LEADER)
        leader.add_metric([], 1 if controller.active.is_set() else 0)
        yield leader
        windows = m.counter_family(m.STATS_WINDOWS)
        windows.add_metric([], controller.metrics.windows)
        yield windows


class ControllerObserver:
    def __init__(self, controller: Controller, *, host: str, port: int) -> None:
        self.controller = controller
        self.figures: observed.Figures | None = None
        self._figures_at = float("-inf")
        # A connection of its own: the controller's pool exists only while it leads.
        self._db = Database(controller.catalog_url, min_size=0, max_size=1, timeout=5.0)
        self._database = CachedProbe("database", lambda: self._db.run(observed.ping))
        self.registry = m.new_registry()
        self.registry.register(controller.metrics)
        self.registry.register(CatalogCollector(self))
        self.server = ObservabilityServer(
            "controller",
            registry=self.registry,
            ready=self.checks,
            before_scrape=self._refresh,
            host=host,
            port=port,
        )

    async def checks(self) -> Sequence[Check]:
        active = self.controller.active.is_set()
        connected = self.controller.connected
        if connected:
            mqtt = "connected to the broker"
        else:
            mqtt = "not connected to the broker" if active else "connects once it is the active controller"
        return [
            Check(
                "leader",
                active,
                "holds the leader lock (the active controller)" if active else "waiting for the leader lock",
            ),
            Check("mqtt", connected, mqtt),
            await self._database(),
        ]

    async def _refresh(self) -> None:
        if not self.controller.active.is_set():
            self.figures = None
            return
        now = time.monotonic()
        if now - self._figures_at < FIGURES_TTL_S:
            return
        try:
            self.figures = await asyncio.wait_for(self._db.run(observed.figures), 5.0)
        except Exception:
            self.figures = None  # the scrape shows no catalog figures rather than stale ones
        self._figures_at = now

    async def start(self) -> None:
        await self._db.open()
        await self.server.start()

    async def close(self) -> None:
        await self.server.close()
        await self._db.close()


async def run_observed(controller: Controller, stop: asyncio.Event, *, port: int | None, host: str) -> None:
    """``controller.run(stop)``, with its endpoints on ``port`` unless it is None."""
    if port is None:
        await controller.run(stop)
        return
    observer = ControllerObserver(controller, host=host, port=port)
    await observer.start()
    try:
        await controller.run(stop)
    finally:
        await observer.close()
