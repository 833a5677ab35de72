"""``LogShipper``: the pod's function log records, published on ``mesh/logs/{svc}/v{N}`` and stored in
the catalog's ``function_logs``, off the runtime's output path.

``offer`` only appends to two bounded buffers and returns; two tasks empty them:

* live: one MQTT message (QoS 0) per record, on a connection of the pod's own with the broker URL (so
  the credentials) it hands its runtimes: a service's runtime account may publish that service's
  ``mesh/logs/{svc}/#`` (``dormant_local.broker_security``). While the broker is away records are not
  kept for it: they are stored, and a live reader wants what happens now.
* stored: batches of up to ``batch`` records every ``flush_s`` on a one-connection pool of its own (a
  flood of logs never delays a lease renewal). While the catalog is unreachable records wait in a buffer
  of ``max_buffer``; past it the oldest are dropped, counted, and the count logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any

from dormant import wire
from dormant.transport import Message, TransportError, new_transport
from dormant_catalog import CatalogUnavailable, Database
from dormant_catalog.function_logs import NewLog, insert_logs, severity_of
from dormant_telemetry.logs import dumps, parse_timestamp

log = logging.getLogger("dormant.sidecar.logs")

Item = tuple[str, int, dict[str, Any]]
MAX_BUFFER = 10_000
BATCH = 500
FLUSH_S = 0.2
DROP_REPORT_S = 10.0
CLOSE_FLUSH_S = 5.0


def _new_log(item: Item) -> NewLog:
    service, version, record = item
    ts = parse_timestamp(record.get("timestamp"))
    assert ts is not None, "records are stamped by LogCapture"
    call_id = record.get("requestId")
    return NewLog(
        app_name=service,
        version=version,
        ts=ts,
        severity=severity_of(record.get("level")),
        call_id=call_id if isinstance(call_id, str) else None,
        record=record,
    )


class LogShipper:
    def __init__(
        self,
        *,
        broker_url: str,
        catalog_url: str,
        pod_id: str,
        max_buffer: int = MAX_BUFFER,
        batch: int = BATCH,
        flush_s: float = FLUSH_S,
    ) -> None:
        self.broker_url = broker_url
        self.catalog_url = catalog_url
        self.client_id = f"dormant-logs-{pod_id}"
        self.max_buffer = max_buffer
        self.batch = batch
        self.flush_s = flush_s
        self._stored: deque[Item] = deque()
        self._live: deque[Item] = deque(maxlen=max_buffer)
        self._store_wake = asyncio.Event()
        self._live_wake = asyncio.Event()
        self._idle = asyncio.Event()
        """Set while nothing waits to be stored."""
        self._idle.set()
        self._connected = False
        self._tasks: list[asyncio.Task[None]] = []
        self._db: Database | None = None
        self.published = 0
        self.stored = 0
        self.dropped = 0
        """Records dropped because the catalog could not take them (full buffer, or a refused batch)."""
        self._reported_drops = 0
        self._reported_at = 0.0

    # ------------------------------------------------------------------ the output path

    def offer(self, service: str, version: int, record: dict[str, Any]) -> None:
        """Queue one record for publishing and storing; never waits."""
        item = (service, version, record)
        if len(self._stored) >= self.max_buffer:
            self._stored.popleft()
            self.dropped += 1
        self._stored.append(item)
        self._store_wake.set()
        self._idle.clear()
        if self._connected:
            self._live.append(item)
            self._live_wake.set()

    @property
    def publishing(self) -> bool:
        """Connected to the broker: records offered now are published live."""
        return self._connected

    @property
    def pending(self) -> int:
        """Records waiting to be stored."""
        return len(self._stored)

    # ------------------------------------------------------------------ tasks

    def start(self) -> None:
        if self._tasks:
            return
        self._db = Database(self.catalog_url, min_size=0, max_size=1, timeout=5.0)
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="dormant-logs-publish"),
            asyncio.create_task(self._store_loop(self._db), name="dormant-logs-store"),
        ]

    async def close(self, flush_timeout_s: float = CLOSE_FLUSH_S) -> None:
        """Store what is still buffered (for at most ``flush_timeout_s``), then stop."""
        if not self._tasks:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), flush_timeout_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._db is not None:
            await self._db.close()
            self._db = None
        self._report_drops(force=True)

    async def _publish_loop(self) -> None:
        delay = 0.5
        down_since: float | None = None
        while True:
            transport = new_transport(self.broker_url, client_id=self.client_id)
            try:
                await transport.connect()
            except (TransportError, OSError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("log records are not published live: cannot reach the broker (%s)", exc)
                with contextlib.suppress(Exception):
                    await transport.close()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            if down_since is not None:
                log.info("log records are published live again")
            down_since, delay = None, 0.5
            self._connected = True
            try:
                while True:
                    while self._live:
                        service, version, record = self._live.popleft()
                        payload = dumps(record).encode()
                        await transport.publish(Message(wire.logs_topic(service, version), payload, qos=0))
                        self.published += 1
                    self._live_wake.clear()
                    await self._live_wake.wait()
            except TransportError as exc:
                down_since = time.monotonic()
                log.warning("log records are not published live: lost the broker (%s)", exc)
            finally:
                self._connected = False
                self._live.clear()
                with contextlib.suppress(Exception):
                    await transport.close()

    async def _store_loop(self, db: Database) -> None:
        await db.open()  # no connection yet (min_size 0): one is made for the first batch
        delay = 0.5
        failing = False
        while True:
            await self._store_wake.wait()
            await asyncio.sleep(self.flush_s)  # let a batch gather
            while self._stored:
                batch = [self._stored.popleft() for _ in range(min(self.batch, len(self._stored)))]
                try:
                    await db.run(insert_logs, [_new_log(item) for item in batch])
                except CatalogUnavailable as exc:
                    # Back in front of newer records, within the bound (the oldest go first).
                    self._stored.extendleft(reversed(batch))
                    while len(self._stored) > self.max_buffer:
                        self._stored.popleft()
                        self.dropped += 1
                    if not failing:
                        log.warning("cannot store log records (keeping up to %d): %s", self.max_buffer, exc)
                    failing = True
                    self._report_drops()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
                    continue
                except Exception as exc:  # the database refused the batch itself: retrying cannot help
                    self.dropped += len(batch)
                    log.error("the catalog refused %d log records; dropped: %s", len(batch), exc)
                else:
                    self.stored += len(batch)
                    if failing:
                        log.info("storing log records again")
                    failing, delay = False, 0.5
            self._store_wake.clear()
            self._idle.set()
            self._report_drops()

    def _report_drops(self, *, force: bool = False) -> None:
        new = self.dropped - self._reported_drops
        now = time.monotonic()
        if new and (force or now - self._reported_at >= DROP_REPORT_S):
            log.warning(
                "dropped %d log records (%d in all): the catalog could not take them and the buffer holds %d",
                new,
                self.dropped,
                self.max_buffer,
            )
            self._reported_drops, self._reported_at = self.dropped, now
