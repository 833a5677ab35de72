"""``Engine``: moves running rollouts along their steps, judges each step on the new version's
numbers, rolls back on a breach, finishes, and retires replaced versions when their time is up.

Each rollout is driven in one transaction holding its row lock (so ``promote`` and ``rollback``
from the CLI take turns with it). A step is first *applied* (capacity serving, weights set, then
``step_started_at``), then *observed* for the step's interval and until it has ``minSamples`` calls to
judge (a step at 0 % gets no routed calls and moves on after its interval, except blue-green's test
phase, whose calls testers send to the version topic). All state is in the ``rollouts``
row, so a restarted controller resumes where the last one stopped.
"""

from __future__ import annotations

import logging
import math
import time

from ..aliases import LIVE_ALIAS
from ..audit import record_audit
from ..db import Conn, Database
from ..rollouts import actions, store
from ..rollouts.records import RolloutRecord
from ..rollouts.thresholds import judge
from .stats import StatsBook

log = logging.getLogger("dormant.controller")

ACTOR = "controller"


class Engine:
    def __init__(self, db: Database, stats: StatsBook) -> None:
        self._db = db
        self._stats = stats
        self._said: dict[str, str] = {}

    async def tick(self) -> None:
        async with self._db.connection() as conn:
            running = [r.rollout_id for r in await store.active_rollouts(conn) if r.state == "running"]
            retiring = [r.rollout_id for r in await store.due_retirements(conn)]
        for rollout_id in running:
            try:
                async with self._db.transaction() as conn:
                    await self._drive(conn, rollout_id)
            except Exception:
                log.exception("driving rollout %s failed (will retry)", rollout_id)
        for rollout_id in retiring:
            async with self._db.transaction() as conn:
                await self._retire(conn, rollout_id)

    async def _say(self, conn: Conn, record: RolloutRecord, reason: str) -> None:
        """Keep the deployment's status reason current (written only when it changes)."""
        if self._said.get(record.app_name) != reason:
            self._said[record.app_name] = reason
            await store.set_deployment_state(conn, record.app_name, status="rolling-out", reason=reason)

    def _where(self, record: RolloutRecord) -> str:
        steps = record.settings.steps
        return (
            f"{record.strategy} v{record.from_version} -> v{record.to_version},"
            f" step {record.step + 1}/{len(steps)} ({record.percent} %)"
        )

    async def _drive(self, conn: Conn, rollout_id: int) -> None:
        record = await store.get_rollout(conn, rollout_id, lock=True)
        if record is None or record.state != "running":
            return
        if record.step_started_at is None:
            await self._apply(conn, record)
        else:
            await self._observe(conn, record)

    async def _weights(self, conn: Conn, record: RolloutRecord, share: int) -> None:
        weights = {record.from_version: 100 - share, record.to_version: share}
        if share == 100:
            weights = {record.to_version: 100}
        if (await store.aliases(conn, record.app_name)).get(LIVE_ALIAS) != weights:
            await store.set_weights(
                conn, record.app_name, LIVE_ALIAS, weights, actor=ACTOR, why=self._where(record)
            )

    async def _apply(self, conn: Conn, record: RolloutRecord) -> None:
        app, share = record.app_name, record.percent
        serving = await store.serving_versions(conn, app)
        to_slots, to_serving = serving.get(record.to_version, (0, 0))
        if record.strategy == "rolling":
            total = to_slots + serving.get(record.from_version, (0, 0))[0]
            want = total if share >= 100 else max(1, min(total - 1, math.ceil(total * share / 100)))
            share = round(100 * want / total)
            if to_slots < want:
                if to_serving > 0:
                    await self._weights(conn, record, share)  # move traffic off the slots about to go
                await store.retarget_slots(conn, app, record.from_version, record.to_version, want - to_slots)
                await self._say(conn, record, f"{self._where(record)}: replacing {want - to_slots} slot(s)")
                return
            if to_serving < want:
                await self._say(conn, record, f"{self._where(record)}: {to_serving}/{want} slots serving")
                return
        elif share > 0 and to_serving == 0:
            await self._say(
                conn, record, f"{self._where(record)}: waiting for a pod to serve v{record.to_version}"
            )
            return
        await self._weights(conn, record, share)
        await store.update_rollout(conn, record.rollout_id, step_started_at="now")
        await record_audit(
            conn,
            actor=ACTOR,
            app_name=app,
            action="rollout-step",
            detail={"rolloutId": record.rollout_id, "step": record.step, "percent": share},
        )
        await self._say(conn, record, f"{self._where(record)}: observing")

    async def _observe(self, conn: Conn, record: RolloutRecord) -> None:
        config = record.settings
        elapsed = await store.seconds_in_step(conn, record.rollout_id) or 0.0
        stats = self._stats.since(record.app_name, record.to_version, time.time() - elapsed)
        verdict = judge(stats, config.thresholds)
        where = self._where(record)
        if verdict.kind == "fail":
            log.warning("%s: %s; rolling back", where, verdict.reason)
            await actions.roll_back_rollout(
                conn, record, reason=f"{where}: {verdict.reason}", numbers=verdict.numbers, actor=ACTOR
            )
            self._said.pop(record.app_name, None)
            return
        promoted = "promotedBy" in record.numbers
        if elapsed < config.interval_s and not promoted:
            await self._say(conn, record, f"{where}: {verdict.reason}")
            return
        if verdict.kind == "wait" and not promoted:
            if record.strategy == "blue-green" and record.percent == 0:
                # The test phase: green gets only the calls testers send to its version topic, and
                # the switch to 100 % waits for minSamples of them, however short testDuration was.
                await self._say(conn, record, f"{where}: test phase over, {verdict.reason} before the switch")
                return
            if record.percent > 0:
                await self._say(conn, record, f"{where}: {verdict.reason}")
                return
        numbers = {**record.numbers, f"step{record.step + 1}": verdict.numbers}
        if record.step >= config.final_step or promoted:
            await self._succeed(conn, record, numbers)
        elif config.manual_promotion and record.step + 1 == config.final_step:
            await store.update_rollout(
                conn, record.rollout_id, state="waiting", numbers=numbers, reason="waiting for promote"
            )
            await self._say(conn, record, f"{where}: waiting for 'dormant promote {record.app_name}'")
        else:
            await store.update_rollout(
                conn, record.rollout_id, step=record.step + 1, step_started_at=None, numbers=numbers
            )

    async def _succeed(self, conn: Conn, record: RolloutRecord, numbers: dict[str, object]) -> None:
        config = record.settings
        if record.strategy != "rolling":
            await store.update_rollout(
                conn, record.rollout_id, retire_version=record.from_version, retire_at=config.retire_after_s
            )
        await store.update_rollout(
            conn, record.rollout_id, state="succeeded", numbers=numbers, reason="completed", finished_at="now"
        )
        await store.set_deployment_state(
            conn,
            record.app_name,
            status="active",
            reason=f"{record.strategy} to v{record.to_version} completed",
            target_version=record.to_version,
            strategy=record.strategy,
        )
        await record_audit(
            conn,
            actor=ACTOR,
            app_name=record.app_name,
            action="rollout-succeeded",
            detail={"rolloutId": record.rollout_id, "version": record.to_version, "numbers": numbers},
        )
        self._said.pop(record.app_name, None)
        log.info("%s v%s is live", record.app_name, record.to_version)

    async def _retire(self, conn: Conn, rollout_id: int) -> None:
        record = await store.get_rollout(conn, rollout_id, lock=True)
        if record is None or record.retire_version is None:
            return
        live = (await store.aliases(conn, record.app_name)).get(LIVE_ALIAS, {})
        version = record.retire_version
        if live.get(version, 0) <= 0:
            removed = await store.remove_version_slots(conn, record.app_name, version)
            await record_audit(
                conn,
                actor=ACTOR,
                app_name=record.app_name,
                action="retire",
                detail={"version": version, "slots": removed},
            )
        await store.update_rollout(conn, rollout_id, retire_version=None, retire_at=None)
