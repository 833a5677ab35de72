"""``AuditTrail``: the execution, authorization and security entries a process reports, written in
batches off its hot path.

A call's path only appends to a bounded in-memory buffer (no I/O, no lock: one event loop); a task
writes the buffer with one COPY every ``flush_s`` or as soon as ``batch`` entries wait. When the
catalog cannot be reached the entries wait for the next try, and beyond ``max_buffered`` the oldest
are dropped and counted (``dropped``), with a warning: auditing must never stall or fail a call. A
process that stops calls ``close()``, which writes what is left (bounded by a timeout).

``DORMANT_AUDIT_EXECUTIONS`` says which executions are recorded: ``all`` (the default), ``errors``
(calls that failed) or ``off``; refusals and security events are always recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque

from .audit import AuditEvent, record_events
from .db import Database

log = logging.getLogger("dormant.audit")

EXECUTION_MODES = ("all", "errors", "off")
FLUSH_S = 1.0
BATCH = 500
MAX_BUFFERED = 20_000
CLOSE_TIMEOUT_S = 5.0


def execution_mode_from_env() -> str:
    """``DORMANT_AUDIT_EXECUTIONS``; a value other than all, errors or off is refused."""
    mode = os.environ.get("DORMANT_AUDIT_EXECUTIONS", "all").strip().lower() or "all"
    if mode not in EXECUTION_MODES:
        choices = ", ".join(EXECUTION_MODES)
        raise ValueError(f"DORMANT_AUDIT_EXECUTIONS must be one of {choices}, not {mode!r}")
    return mode


class AuditTrail:
    def __init__(
        self,
        catalog_url: str,
        *,
        executions: str = "all",
        flush_s: float = FLUSH_S,
        batch: int = BATCH,
        max_buffered: int = MAX_BUFFERED,
        timeout_s: float = 10.0,
    ) -> None:
        if executions not in EXECUTION_MODES:
            raise ValueError(f"executions must be one of {', '.join(EXECUTION_MODES)}")
        self.executions = executions
        self.flush_s = flush_s
        self.batch = batch
        self._buffer: deque[AuditEvent] = deque(maxlen=max_buffered)
        self.catalog_url = catalog_url
        self.timeout_s = timeout_s
        self._db: Database | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.written = 0
        self.dropped = 0

    def records_execution(self, ok: bool) -> bool:
        """Whether an execution with this outcome is recorded (``DORMANT_AUDIT_EXECUTIONS``)."""
        return self.executions == "all" or (self.executions == "errors" and not ok)

    def add(self, event: AuditEvent) -> None:
        """Buffer one entry (never blocks; the oldest goes when the buffer is full)."""
        if self._task is None:  # the first entry starts the writer
            self._task = asyncio.get_running_loop().create_task(self._run(), name="audit-trail")
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 10_000 == 0:
                log.warning("audit buffer full: %d entries dropped so far", self.dropped)
        self._buffer.append(event)
        if len(self._buffer) >= self.batch:
            self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write what is buffered; on a failure keep it for the next try."""
        while self._buffer:
            events = [self._buffer[i] for i in range(min(self.batch, len(self._buffer)))]
            try:
                if self._db is None:
                    self._db = Database(self.catalog_url, min_size=0, max_size=1, timeout=self.timeout_s)
                    await self._db.open()
                async with self._db.transaction() as conn:
                    await record_events(conn, events)
            except Exception as exc:
                log.warning("writing %d audit entries failed (kept for the next try): %s", len(events), exc)
                await self._drop_connection()
                return
            for _ in events:
                self._buffer.popleft()
            self.written += len(events)

    async def close(self) -> None:
        """Stop the writer and write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), CLOSE_TIMEOUT_S)
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                await db.close()
