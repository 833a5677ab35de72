"""``Autoscaler``: sets each autoscaled deployment's replica count from the load its runtimes report.

Driven by the controller process on every tick (it evaluates at most every ``eval_s``, at once when
a wake request is pending). The services it manages are the deployed functions with scaling settings
(``gateway_functions.scaling``, see ``dormant_catalog.scaling``) and those with a
``preProvisionedConcurrency``, which only ever raises their replicas to that floor.

For each: the load is the calls its runtimes answered over the last ``window_s`` (the ``StatsBook``)
and their mean latency; ``scaling.desired_replicas`` turns it into a count between the floor and
``maxInstances``. Up: at once when the floor rises (``minInstances``, a schedule's window), otherwise
no sooner than ``scaleUpCooldown`` after the last scale-up. Down: once the desired count has stayed
below the current one for ``scaleDownCooldown`` (so ``minInstances: 0`` scales to zero after that long
without calls). A wake request (``mesh/wake/{svc}``, published by a caller whose call reached nobody)
scales a service at zero replicas to max(1, floor) at once; further wakes for it are no-ops while it has
replicas. Nothing is scaled while a rollout runs, waits or keeps a replaced version (logged once).
Every change goes through ``deployments.scale``, which audits it; each is logged here with its reason.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from ..db import Database
from ..deployments import ScalingBlocked, scale
from ..errors import CatalogError
from ..rollouts.thresholds import VersionStats
from ..scaling import ScalingSettings, desired_replicas, mean_latency_ms, settings_from_json
from .stats import StatsBook

log = logging.getLogger("dormant.controller")

ACTOR = "autoscaler"
WINDOW_S = 3.0
EVAL_S = 0.5
STARTING_HOLD_S = 60.0
"""After a wake, the scale-down timer waits (this long at most) for a slot to serve: the first call is
answered, and counted, only once a pod has loaded the version."""


@dataclass(frozen=True, slots=True)
class Managed:
    app_name: str
    replicas: int
    settings: ScalingSettings | None
    """None: only ``pre_provisioned`` applies (a floor, never a scale-down)."""
    pre_provisioned: int
    rollout: int | None
    """A rollout that runs, waits or keeps a replaced version: no scaling meanwhile."""
    serving: int
    """Slots of the target version whose pod serves it."""


async def managed_deployments(db: Database) -> list[Managed]:
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT d.app_name, d.replicas, f.scaling, f.concurrency,"
            " (SELECT r.rollout_id FROM rollouts r WHERE r.app_name = d.app_name"
            "  AND (r.state IN ('running', 'waiting') OR r.retire_version IS NOT NULL)"
            "  ORDER BY r.rollout_id LIMIT 1),"
            " (SELECT count(*) FROM replica_slots s WHERE s.app_name = d.app_name"
            "  AND s.version = d.target_version AND s.pod_id IS NOT NULL AND s.lease_expires_at > now()"
            "  AND s.serving_generation = s.generation)"
            " FROM application_deployments d JOIN gateway_functions f ON f.name = d.app_name"
            " WHERE f.deleted_at IS NULL AND (f.scaling IS NOT NULL"
            " OR jsonb_typeof(f.concurrency -> 'preProvisionedConcurrency') = 'number')"
            " ORDER BY d.app_name"
        )
        rows = await cur.fetchall()
    out = []
    for app, replicas, scaling, concurrency, rollout, serving in rows:
        settings = None
        if scaling is not None:
            try:
                settings = settings_from_json(scaling)
            except CatalogError as exc:  # stored by an older rule: say so, do not guess
                log.warning("%s: ignoring unreadable scaling settings: %s", app, exc)
        pre = (concurrency or {}).get("preProvisionedConcurrency", 0)
        pre = pre if isinstance(pre, int) and not isinstance(pre, bool) and pre > 0 else 0
        if settings is None and pre == 0:
            continue
        rollout_id = None if rollout is None else int(rollout)
        out.append(Managed(str(app), int(replicas), settings, pre, rollout_id, int(serving)))
    return out


def _load(stats: StatsBook, app: str, seconds: float) -> VersionStats:
    total = VersionStats()
    for version_stats, _ in stats.recent(app, seconds).values():
        total.merge(version_stats)
    return total


class Autoscaler:
    def __init__(
        self, db: Database, stats: StatsBook, *, window_s: float = WINDOW_S, eval_s: float = EVAL_S
    ) -> None:
        self._db = db
        self._stats = stats
        self._window_s = window_s
        self._eval_s = eval_s
        self._started = time.time()
        self._evaluated = 0.0
        self._wakes: set[str] = set()
        self._last_up: dict[str, float] = {}
        self._woken_at: dict[str, float] = {}
        self._low_since: dict[str, float] = {}
        self._said: dict[str, str] = {}

    def wake(self, service: str) -> None:
        """A caller found nothing serving ``service``: scale it up from zero on the next tick."""
        self._wakes.add(service)

    def _say(self, app: str, text: str) -> None:
        """Log ``text`` once (until something else is said about ``app``)."""
        if self._said.get(app) != text:
            self._said[app] = text
            log.info("%s", text)

    async def tick(self) -> None:
        now = time.time()
        if not self._wakes and now - self._evaluated < self._eval_s:
            return
        self._evaluated = now
        wakes, self._wakes = self._wakes, set()
        deployments = await managed_deployments(self._db)
        for managed in deployments:
            try:
                await self._consider(managed, now, woken=managed.app_name in wakes)
            except Exception:
                log.exception("autoscaling %s failed (will retry)", managed.app_name)
        for app in wakes - {m.app_name for m in deployments}:
            log.debug("wake request for %s ignored: it is not deployed with scaling settings", app)

    async def _consider(self, m: Managed, now: float, *, woken: bool) -> None:
        app = m.app_name
        if m.rollout is not None:
            self._low_since.pop(app, None)
            self._say(app, f"not scaling {app}: rollout #{m.rollout} is in progress")
            return
        settings = m.settings
        if settings is None:
            if m.replicas < m.pre_provisioned:
                why = f"preProvisionedConcurrency {m.pre_provisioned}"
                await self._scale(app, m.replicas, m.pre_provisioned, why)
            return
        moment = datetime.fromtimestamp(now, UTC)
        floor, _ = settings.floor(moment, pre_provisioned=m.pre_provisioned)
        floor = min(floor, settings.max_instances)
        if woken and m.replicas == 0:
            target = max(1, floor)
            if await self._scale(app, 0, target, "wake: a call found nothing serving", up=now):
                self._woken_at[app] = now
            return
        seconds = max(1.0, min(self._window_s, now - self._started))
        load = _load(self._stats, app, seconds)
        decision = desired_replicas(
            settings,
            calls=load.calls,
            seconds=seconds,
            latency_ms=mean_latency_ms(load.latency),
            now=moment,
            pre_provisioned=m.pre_provisioned,
        )
        if decision.replicas > m.replicas:
            self._low_since.pop(app, None)
            cooled = now - self._last_up.get(app, float("-inf")) >= settings.scale_up_cooldown_s
            if m.replicas < floor or cooled:
                await self._scale(app, m.replicas, decision.replicas, decision.reason, up=now)
            else:
                self._say(app, f"{app}: {decision.reason}; waiting for scaleUpCooldown")
        elif decision.replicas < m.replicas:
            if m.serving == 0 and now - self._woken_at.get(app, float("-inf")) < STARTING_HOLD_S:
                self._low_since.pop(app, None)
                return
            since = self._low_since.setdefault(app, now)
            if now - since >= settings.scale_down_cooldown_s:
                reason = f"{decision.reason} for {settings.scale_down_cooldown_s:g} s (scaleDownCooldown)"
                await self._scale(app, m.replicas, decision.replicas, reason)
        else:
            self._low_since.pop(app, None)

    async def _scale(
        self, app: str, before: int, after: int, reason: str, *, up: float | None = None
    ) -> bool:
        try:
            async with self._db.transaction() as conn:
                await scale(conn, app, after, reason=reason, actor=ACTOR)
        except ScalingBlocked as exc:
            self._say(app, f"not scaling {app}: {exc}")
            return False
        self._low_since.pop(app, None)
        if up is not None:
            self._last_up[app] = up
        self._said.pop(app, None)
        log.info("scaled %s from %d to %d replicas: %s", app, before, after, reason)
        return True
