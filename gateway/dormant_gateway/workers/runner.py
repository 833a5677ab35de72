"""Starting a replica's background workers as tasks (stopped by cancelling them)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from ..observability import WORKER
from ..state import GatewayState
from .async_invocations import AsyncInvocationWorker
from .cron import CronScheduler
from .queue import QueueSupervisor
from .retention import RetentionSweeper
from .stream import StreamSupervisor

log = logging.getLogger("dormant.gateway.workers")
RESTART_S = 1.0


async def _forever(name: str, make: Callable[[], Awaitable[None]]) -> None:
    """Run a worker; if it crashes, log it and start it again."""
    WORKER.set(name)  # the trigger label of the calls it (and its tasks) make: observability.py
    while True:
        try:
            await make()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker %s crashed; restarting", name)
            await asyncio.sleep(RESTART_S)


def start_workers(gateway: GatewayState) -> list[asyncio.Task[None]]:
    worker_id = gateway.config.replica_id or f"gw-{uuid.uuid4().hex[:12]}"
    return [
        asyncio.create_task(
            _forever("async", AsyncInvocationWorker(gateway, worker_id).run), name="dormant-async"
        ),
        asyncio.create_task(_forever("cron", CronScheduler(gateway).run), name="dormant-cron"),
        asyncio.create_task(_forever("queue", QueueSupervisor(gateway).run), name="dormant-queue"),
        asyncio.create_task(_forever("stream", StreamSupervisor(gateway).run), name="dormant-stream"),
        asyncio.create_task(_forever("retention", RetentionSweeper(gateway).run), name="dormant-retention"),
    ]
