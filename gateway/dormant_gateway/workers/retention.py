"""``RetentionSweeper``: purges functions deleted longer ago than the retention period.

A deleted function stays restorable (``POST /api/v1/functions/{name}/restore``) for
``function_retention_s``; afterwards this worker removes its record and its triggers
(``dormant_catalog.gateway.functions.purge_deleted``, audited). Every gateway replica runs it: the
DELETE is idempotent, so two replicas sweeping at once purge each function once.
"""

from __future__ import annotations

import asyncio
import logging

from dormant_catalog.gateway import functions as function_sql

from ..state import GatewayState

log = logging.getLogger("dormant.gateway.retention")
MAX_SWEEP_INTERVAL_S = 3600.0
ACTOR = "gateway:retention"


class RetentionSweeper:
    def __init__(self, gateway: GatewayState) -> None:
        self.gateway = gateway
        retention = gateway.config.function_retention_s
        # A tenth of the retention (a function is purged at most 10 % late), at most hourly.
        self.interval_s = min(MAX_SWEEP_INTERVAL_S, max(0.5, retention / 10))

    async def sweep(self) -> list[str]:
        retention = self.gateway.config.function_retention_s
        purged = await self.gateway.db.run(function_sql.purge_deleted, retention_s=retention, actor=ACTOR)
        for name in purged:
            log.info("purged function %s (deleted more than %g s ago)", name, retention)
            self.gateway.forget_function(name)
        if purged:
            self.gateway.bump_triggers()
        return purged

    async def run(self) -> None:
        while True:
            await self.sweep()
            await asyncio.sleep(self.interval_s)
