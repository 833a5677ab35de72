"""The cron scheduler: turns each tick of each enabled cron trigger into one async invocation.

Every replica computes the same ticks and tries to enqueue each as an invocation whose callId is
``cron-{trigger}-{tick epoch}``; the insert is ``ON CONFLICT DO NOTHING``, so exactly one replica's
insert wins and the tick fires once however many replicas run. The async-invocation workers then
call the function, with the trigger's retry settings. A replica that starts (or sees a trigger for
the first time) fires the ticks of the last ``CATCH_UP_S`` seconds that no replica fired.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from dormant_catalog import CatalogError
from dormant_catalog.gateway import TriggerRecord

from ..state import GatewayState
from ..triggers.schedule import Schedule, ScheduleError, parse_schedule, utc_now

log = logging.getLogger("dormant.gateway.cron")

RELOAD_S = 1.0
MAX_SLEEP_S = 0.5
CATCH_UP_S = 60.0
TICK_TIMEOUT_S = 60.0


class CronScheduler:
    def __init__(self, gateway: GatewayState) -> None:
        self._gateway = gateway
        self._triggers: dict[str, tuple[TriggerRecord, Schedule]] = {}
        self._cursor: dict[str, datetime] = {}
        self._loaded_at = float("-inf")

    async def _reload(self) -> None:
        records = await self._gateway.store.enabled_triggers("cron")
        triggers: dict[str, tuple[TriggerRecord, Schedule]] = {}
        for record in records:
            try:
                schedule = parse_schedule(
                    str(record.config["schedule"]), str(record.config.get("timezone", "UTC"))
                )
            except (ScheduleError, KeyError) as exc:
                log.warning("cron trigger %s: %s", record.trigger_id, exc)
                continue
            triggers[record.trigger_id] = (record, schedule)
        self._triggers = triggers
        self._cursor = {k: v for k, v in self._cursor.items() if k in triggers}

    async def run(self) -> None:
        gateway = self._gateway
        loop = asyncio.get_running_loop()
        while True:
            try:
                if gateway.triggers_changed.is_set() or loop.time() - self._loaded_at >= RELOAD_S:
                    gateway.triggers_changed.clear()
                    await self._reload()
                    self._loaded_at = loop.time()
                await self._fire_due(utc_now())
            except CatalogError as exc:
                log.warning("cron: catalog unavailable: %s", exc)
            sleep = self._sleep_s(utc_now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gateway.triggers_changed.wait(), sleep)

    def _sleep_s(self, now: datetime) -> float:
        upcoming = [schedule.next_after(now) for _, schedule in self._triggers.values()]
        if not upcoming:
            return MAX_SLEEP_S
        return max(0.0, min(MAX_SLEEP_S, (min(upcoming) - now).total_seconds()))

    async def _fire_due(self, now: datetime) -> None:
        for trigger_id, (record, schedule) in self._triggers.items():
            start = self._cursor.get(trigger_id)
            if start is None:
                start = max(record.updated_at, now - timedelta(seconds=CATCH_UP_S))
            for tick in schedule.ticks_between(start, now):
                await self._enqueue(record, tick)
                self._cursor[trigger_id] = tick
            self._cursor.setdefault(trigger_id, start)

    async def _enqueue(self, record: TriggerRecord, tick: datetime) -> None:
        gateway = self._gateway
        call_id = f"cron-{record.trigger_id}-{int(tick.timestamp())}"
        info = await gateway.function_info(record.function_name)
        _, new = await gateway.store.enqueue_invocation(
            call_id=call_id,
            app_name=record.function_name,
            function=record.target,
            version=record.config.get("version"),
            alias=record.config.get("alias"),
            payload={
                "params": record.config.get("input", {}),
                "headers": {
                    "ce-specversion": "1.0",
                    "ce-type": "dev.dormant.cron.tick",
                    "ce-source": f"/triggers/{record.trigger_id}",
                    "ce-id": call_id,
                    "ce-time": tick.isoformat(),
                },
            },
            max_attempts=int(record.config.get("maxAttempts", 3)),
            timeout_s=info.timeout_s or TICK_TIMEOUT_S,
            created_by=record.created_by,
            source="cron",
            trigger_id=record.trigger_id,
            scheduled_at=tick,
        )
        if new:
            gateway.invocations_ready.set()
