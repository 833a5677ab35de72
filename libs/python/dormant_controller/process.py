"""``Controller``: the rollout controller process.

Waits for the leader lock (one active controller), then keeps one MQTT connection: it subscribes to
``mesh/stats/+/+/+`` (QoS 0), ``mesh/services/+`` (to learn which service states are retained) and
``mesh/wake/+`` (callers asking for a service scaled to zero) and ``mesh/config/+`` (to learn which
configurations are retained), and publishes route tables, service states and live configurations
retained. Every ``tick_s`` (and at once on a ``dormant_routes`` or ``dormant_slots`` NOTIFY or a
wake request) it republishes changed route tables and service states, drives the rollouts and lets
the autoscaler set replica counts. Losing the lock (its database connection) stops the work until it is won
again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from dormant import wire
from dormant.transport import Message, Transport, TransportError, new_transport
from dormant_catalog.channels import ROUTES_CHANNEL, SLOTS_CHANNEL
from dormant_catalog.controller import Autoscaler, Engine, LeaderLock, StatsBook
from dormant_catalog.db import Database
from dormant_catalog.listen import SlotListener
from dormant_catalog.migrate import migrate

from .audit_retention import AuditRetention
from .config import CONFIG_FILTER, ConfigPublisher
from .log_retention import LogRetention
from .metrics import FunctionMetrics
from .routes import RoutePublisher
from .services import STATES_FILTER, StatePublisher

log = logging.getLogger("dormant.controller")

STATS_FILTER = wire.stats_filter()
WAKE_FILTER = wire.wake_filter()
TICK_S = 0.2


class Controller:
    def __init__(self, catalog_url: str, broker_url: str, *, tick_s: float = TICK_S) -> None:
        self.catalog_url = catalog_url
        self.broker_url = broker_url
        self.tick_s = tick_s
        self.client_id = f"dormant-controller-{uuid.uuid4().hex[:8]}"
        self.stats = StatsBook()
        self.metrics = FunctionMetrics()
        """The per-function Prometheus metrics, fed by the same windows (``observe`` serves them)."""
        self.active = asyncio.Event()
        """Set while this controller holds the lock and works."""
        self._transport: Transport | None = None
        self._wake = asyncio.Event()
        self._autoscaler: Autoscaler | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set."""
        await migrate(self.catalog_url)
        lock = LeaderLock(self.catalog_url)
        try:
            while not stop.is_set():
                log.info("controller %s waiting for the leader lock", self.client_id)
                if not await lock.acquire(stop):
                    return
                log.info("controller %s is the active controller", self.client_id)
                await self._lead(lock, stop)
                await lock.release()
        finally:
            self.active.clear()
            await lock.release()

    @property
    def connected(self) -> bool:
        """Whether it has a broker connection now (it has one only while it is the active controller)."""
        return self._transport is not None

    async def _publish(self, app_name: str, payload: bytes) -> None:
        await self._publish_retained(wire.routes_topic(app_name), payload)

    async def _publish_retained(self, topic: str, payload: bytes) -> None:
        transport = self._transport
        if transport is None:
            raise TransportError("not connected")
        await transport.publish(Message(topic, payload, qos=1, retain=True))

    async def _lead(self, lock: LeaderLock, stop: asyncio.Event) -> None:
        db = Database(self.catalog_url, min_size=1, max_size=4, timeout=10.0)
        await db.open()
        routes = RoutePublisher(db, self._publish)
        states = StatePublisher(db, self._publish_retained)
        configs = ConfigPublisher(db, self._publish_retained)
        engine = Engine(db, self.stats)
        autoscaler = self._autoscaler = Autoscaler(db, self.stats)
        tasks = [
            asyncio.create_task(self._mqtt(routes, states, configs), name="controller-mqtt"),
            asyncio.create_task(self._listen(ROUTES_CHANNEL), name="controller-listen"),
            asyncio.create_task(self._listen(SLOTS_CHANNEL), name="controller-listen-slots"),
            # Function logs are purged here, once per mesh (log_retention says why).
            asyncio.create_task(LogRetention(db).run(), name="controller-log-retention"),
            asyncio.create_task(AuditRetention(db).run(), name="controller-audit-retention"),
        ]
        self.active.set()
        try:
            while not stop.is_set():
                self._wake.clear()
                if not await lock.held():
                    log.warning("lost the leader lock")
                    return
                try:
                    if self._transport is not None:
                        await routes.sync()
                        await states.sync()
                        await configs.sync()
                    await engine.tick()
                except Exception as exc:
                    log.warning("controller tick failed (retrying): %s", exc)
                    routes.forget()
                    states.forget()
                    configs.forget()
                try:
                    await autoscaler.tick()
                except Exception as exc:
                    log.warning("autoscaler tick failed (retrying): %s", exc)
                waits = [asyncio.create_task(stop.wait()), asyncio.create_task(self._wake.wait())]
                await asyncio.wait(waits, timeout=self.tick_s, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits:
                    waiter.cancel()
        finally:
            self.active.clear()
            self._autoscaler = None
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await db.close()

    async def _mqtt(self, routes: RoutePublisher, states: StatePublisher, configs: ConfigPublisher) -> None:
        delay = 0.1
        while True:
            transport = new_transport(self.broker_url, client_id=self.client_id)
            try:
                await transport.connect()
                await transport.subscribe([STATS_FILTER, STATES_FILTER, WAKE_FILTER, CONFIG_FILTER], qos=0)
                self._transport = transport
                routes.forget()
                states.forget()
                configs.forget()
                self._wake.set()
                delay = 0.1
                async for message in transport.messages():
                    woken = wire.parse_wake_topic(message.topic)
                    if woken is not None:
                        if self._autoscaler is not None:
                            self._autoscaler.wake(woken)
                            self._wake.set()  # tick now: the caller is waiting
                    elif not states.seen(message.topic, message.payload) and not configs.seen(
                        message.topic, message.payload
                    ):
                        if self.stats.add(message.topic, message.payload):
                            self.metrics.add(message.topic, message.payload)
            except TransportError as exc:
                log.warning("broker connection lost (%s); reconnecting", exc)
            finally:
                self._transport = None
                await transport.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _listen(self, channel: str) -> None:
        while True:
            try:
                async with SlotListener(self.catalog_url, channel=channel) as listener:
                    self._wake.set()
                    async for _ in listener:
                        self._wake.set()
            except Exception as exc:
                log.debug("route listener lost (%s); reconnecting", exc)
            await asyncio.sleep(0.5)
