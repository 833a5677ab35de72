"""``LogRetention``: deletes function log records older than the retention period.

Pods store what their runtimes write in the catalog's ``function_logs``
(``dormant_catalog.function_logs``); this worker keeps the table to ``DORMANT_LOG_RETENTION_S``
(7 days by default). It runs in the active controller, the one process a mesh has exactly one of
(the leader lock): gateways and pods come in replicas, and N of them sweeping one table would only
repeat the same deletes. While no controller is active nothing is purged; the next one to win the
lock catches up.
"""

from __future__ import annotations

import asyncio
import logging

from dormant_catalog.db import Database
from dormant_catalog.function_logs import PURGE_BATCH, purge_logs, retention_from_env

log = logging.getLogger("dormant.controller.logs")

MAX_INTERVAL_S = 600.0
MIN_INTERVAL_S = 1.0


class LogRetention:
    def __init__(self, db: Database, retention_s: float | None = None) -> None:
        self.db = db
        self.retention_s = retention_from_env() if retention_s is None else retention_s
        # A tenth of the retention (a record lives at most 10 % longer), between 1 s and 10 minutes.
        self.interval_s = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, self.retention_s / 10))

    async def sweep(self) -> int:
        """Delete every record older than the retention period (in batches); the number deleted."""
        total = 0
        while True:
            deleted = await self.db.run(purge_logs, retention_s=self.retention_s)
            total += deleted
            if deleted < PURGE_BATCH:
                break
        if total:
            log.info("deleted %d function log records older than %g s", total, self.retention_s)
        return total

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the catalog is away: the next sweep catches up
                log.warning("purging old function logs failed (retrying): %s", exc)
            await asyncio.sleep(self.interval_s)
