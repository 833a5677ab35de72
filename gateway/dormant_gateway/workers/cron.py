"""The cron scheduler: turns each tick of each enabled cron trigger into one async invocation.

Every replica computes the same ticks and tries to enqueue each as an invocation whose callId is
``cron-{trigger}-{tick epoch}``; the insert is ``ON CONFLICT DO NOTHING``, so exactly one replica's
insert wins and the tick fires once however many replicas run. The async-invocation workers then
call the function, with the trigger's retry settings. A replica that starts (or sees a trigger for
the first time) fires the ticks of the last ``CATCH_UP_S`` seconds that no replica fired.

One trigger never stops the others: a row whose schedule cannot be parsed or computed, or whose
tick cannot be enqueued for a reason other than the catalog being unreachable, is logged, marked on
its row (``last_error``, shown by the API) and skipped until the row changes; the loop goes on with
the other triggers. Only an unreachable catalog pauses every trigger (they all need it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

from dormant import callid
from dormant_catalog import CatalogError, CatalogUnavailable
from dormant_catalog.gateway import TriggerRecord
from dormant_catalog.gateway import invocations as invocation_sql
from dormant_catalog.gateway import triggers as trigger_sql

from ..state import GatewayState
from ..triggers.schedule import Schedule, parse_schedule, utc_now

log = logging.getLogger("dormant.gateway.cron")

RELOAD_S = 1.0
MAX_SLEEP_S = 0.5
CATCH_UP_S = 60.0
TICK_TIMEOUT_S = 60.0
DEFAULT_MAX_ATTEMPTS = 3


class CronScheduler:
    def __init__(self, gateway: GatewayState) -> None:
        self._gateway = gateway
        self._triggers: dict[str, tuple[TriggerRecord, Schedule]] = {}
        self._cursor: dict[str, datetime] = {}
        self._broken: dict[str, datetime] = {}
        """Trigger id -> the ``updated_at`` of the row version that failed: skipped until it changes."""
        self._loaded_at = float("-inf")

    @property
    def broken(self) -> set[str]:
        return set(self._broken)

    async def _reload(self) -> None:
        records = await self._gateway.db.run(trigger_sql.enabled_triggers, "cron")
        triggers: dict[str, tuple[TriggerRecord, Schedule]] = {}
        for record in records:
            if self._broken.get(record.trigger_id) == record.updated_at:
                continue
            self._broken.pop(record.trigger_id, None)
            try:
                config = record.config
                schedule = parse_schedule(config["schedule"], config.get("timezone", "UTC"))
            except Exception as exc:  # ScheduleError, KeyError, TypeError, AttributeError ...
                await self._quarantine(record, f"invalid schedule: {exc}")
                continue
            triggers[record.trigger_id] = (record, schedule)
        self._triggers = triggers
        self._cursor = {k: v for k, v in self._cursor.items() if k in triggers}
        self._broken = {k: v for k, v in self._broken.items() if any(r.trigger_id == k for r in records)}

    async def _quarantine(self, record: TriggerRecord, reason: str) -> None:
        """Log the failure, mark the row and skip the trigger until its row is updated."""
        self._broken[record.trigger_id] = record.updated_at
        self._triggers.pop(record.trigger_id, None)
        self._cursor.pop(record.trigger_id, None)
        log.error("cron trigger %s skipped until it is changed: %s", record.trigger_id, reason)
        try:
            await self._gateway.db.run(trigger_sql.mark_error, record.trigger_id, reason[:1000])
        except CatalogError as exc:
            log.warning("cron trigger %s: error not recorded: %s", record.trigger_id, exc)

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
            sleep = await self._sleep_s(utc_now())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gateway.triggers_changed.wait(), sleep)

    async def _sleep_s(self, now: datetime) -> float:
        upcoming: list[datetime] = []
        for record, schedule in list(self._triggers.values()):
            try:
                upcoming.append(schedule.next_after(now))
            except Exception as exc:
                await self._quarantine(record, f"cannot compute the next tick: {exc!r}")
        if not upcoming:
            return MAX_SLEEP_S
        return max(0.0, min(MAX_SLEEP_S, (min(upcoming) - now).total_seconds()))

    async def _fire_due(self, now: datetime) -> None:
        for trigger_id, (record, schedule) in list(self._triggers.items()):
            try:
                await self._fire_one(trigger_id, record, schedule, now)
            except CatalogUnavailable:
                raise  # every trigger needs the catalog: pause them all, retry on the next pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._quarantine(record, f"cannot fire: {exc!r}")

    async def _fire_one(
        self, trigger_id: str, record: TriggerRecord, schedule: Schedule, now: datetime
    ) -> None:
        start = self._cursor.get(trigger_id)
        if start is None:
            start = max(record.updated_at, now - timedelta(seconds=CATCH_UP_S))
        for tick in schedule.ticks_between(start, now):
            await self._enqueue(record, tick)
            self._cursor[trigger_id] = tick
        self._cursor.setdefault(trigger_id, start)

    async def _enqueue(self, record: TriggerRecord, tick: datetime) -> None:
        gateway = self._gateway
        call_id = callid.scheduled(record.trigger_id, int(tick.timestamp()))
        info = await gateway.function_info(record.function_name)
        config = record.config
        version = config.get("version")
        alias = config.get("alias")
        attempts = config.get("maxAttempts", DEFAULT_MAX_ATTEMPTS)
        if version is not None and (type(version) is not int or not 1 <= version <= 2**31 - 1):
            raise ValueError(f"invalid version {version!r}")
        if alias is not None and not isinstance(alias, str):
            raise ValueError(f"invalid alias {alias!r}")
        if type(attempts) is not int or not 1 <= attempts <= 20:
            raise ValueError(f"invalid maxAttempts {attempts!r}")
        _, new = await gateway.db.run(
            invocation_sql.enqueue,
            call_id=call_id,
            app_name=record.function_name,
            function=record.target,
            version=version,
            alias=alias,
            payload={
                "params": config.get("input", {}),
                "headers": {
                    "ce-specversion": "1.0",
                    "ce-type": "dev.dormant.cron.tick",
                    "ce-source": f"/triggers/{record.trigger_id}",
                    "ce-id": call_id,
                    "ce-time": tick.isoformat(),
                },
            },
            max_attempts=attempts,
            timeout_s=info.timeout_s or TICK_TIMEOUT_S,
            created_by=record.created_by,
            source="cron",
            trigger_id=record.trigger_id,
            scheduled_at=tick,
        )
        if new:
            gateway.invocations_ready.set()
