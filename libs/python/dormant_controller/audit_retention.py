"""``AuditRetention``: deletes execution, authorization and security entries of the audit log older
than ``DORMANT_AUDIT_RETENTION_S`` (7 days by default); deployment history is kept.

Runtimes and gateways write those entries in batches (``dormant_catalog.audit_trail``); like the
function logs' retention, the sweep runs in the active controller, the one process a mesh has exactly
one of, every tenth of the retention period (between 1 s and 10 minutes).
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import UTC, datetime, timedelta

from dormant_catalog.audit import DEFAULT_EVENT_RETENTION_S, purge_events
from dormant_catalog.db import Database

log = logging.getLogger("dormant.controller.audit")

MAX_INTERVAL_S = 600.0
MIN_INTERVAL_S = 1.0


def audit_retention_from_env() -> float:
    """``DORMANT_AUDIT_RETENTION_S`` (seconds, more than 0); a bad value is refused."""
    raw = os.environ.get("DORMANT_AUDIT_RETENTION_S", "").strip()
    if not raw:
        return float(DEFAULT_EVENT_RETENTION_S)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"DORMANT_AUDIT_RETENTION_S must be a number of seconds, not {raw!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"DORMANT_AUDIT_RETENTION_S must be more than 0 seconds, not {raw!r}")
    return value


class AuditRetention:
    def __init__(self, db: Database, retention_s: float | None = None) -> None:
        self.db = db
        self.retention_s = audit_retention_from_env() if retention_s is None else retention_s
        self.interval_s = min(MAX_INTERVAL_S, max(MIN_INTERVAL_S, self.retention_s / 10))

    async def sweep(self, now: datetime | None = None) -> int:
        """Delete the entries older than the retention period (as of ``now``); how many."""
        cutoff = (now or datetime.now(UTC)) - timedelta(seconds=self.retention_s)
        deleted = await self.db.run(purge_events, older_than=cutoff)
        if deleted:
            log.info("deleted %d audit entries older than %g s", deleted, self.retention_s)
        return deleted

    async def run(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception as exc:  # the catalog is away: the next sweep catches up
                log.warning("purging old audit entries failed (retrying): %s", exc)
            await asyncio.sleep(self.interval_s)
