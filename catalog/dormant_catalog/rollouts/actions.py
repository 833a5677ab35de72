"""What users ask of deployments and rollouts, each in one transaction: deploy all at once, start a
rollout, roll back, promote, set an alias.

The controller moves a running rollout from step to step (``controller.engine``); these are the
decisions that come from outside it. Deploying to ``live`` needs an approved version unless forced,
and a forced deploy is audited.
"""

from __future__ import annotations

from typing import Any

from .. import aliases, compatibility, deployments
from ..aliases import LIVE_ALIAS
from ..audit import DEFAULT_ACTOR, record_audit
from ..db import Conn
from ..errors import InvalidCatalogRequest, NotFoundInCatalog
from ..records import DeploymentRecord
from . import store
from .config import parse_config
from .records import RolloutRecord

ROLLBACK_RETIRE_S = 2.0
"""How long a rolled-back version keeps its slots (for calls already on their way to it)."""
EVERY_SLOT = 1_000_000


def primary(weights: dict[int, int]) -> int | None:
    """The version with the highest weight (ties: the newer), as the catalog's ``live`` flag has it."""
    positive = [(w, v) for v, w in weights.items() if w > 0]
    return max(positive)[1] if positive else None


async def require_approved(
    conn: Conn, app_name: str, version: int, *, force: bool, actor: str, why: str
) -> None:
    cur = await conn.execute(
        "SELECT status FROM application_catalog WHERE app_name = %s AND version = %s", (app_name, version)
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFoundInCatalog(f"{app_name!r} has no version {version}")
    if row[0] == "approved":
        return
    if not force:
        raise InvalidCatalogRequest(
            f"{app_name} v{version} is {row[0]}, not approved: approve it"
            f" (dormant approve {app_name} {version}) or force the {why}"
        )
    await record_audit(
        conn,
        actor=actor,
        app_name=app_name,
        action="force",
        detail={"version": version, "status": row[0], "why": why},
    )


async def deploy(
    conn: Conn, app_name: str, *, version: int | None = None, replicas: int = 1, actor: str = DEFAULT_ACTOR
) -> DeploymentRecord:
    """All-at-once: every slot serves ``version`` (default: the latest), ``live`` = 100 %; it replaces
    any rollout in progress."""
    await supersede(conn, app_name, actor=actor)
    return await deployments.deploy(conn, app_name, version=version, replicas=replicas, actor=actor)


async def start(
    conn: Conn, app_name: str, to_version: int, raw_config: dict[str, Any], *, actor: str = DEFAULT_ACTOR
) -> RolloutRecord:
    """Begin moving ``live`` to ``to_version`` by the configured strategy (the controller drives it)."""
    cur = await conn.execute(
        "SELECT target_version, replicas FROM application_deployments WHERE app_name = %s FOR UPDATE",
        (app_name,),
    )
    row = await cur.fetchone()
    if row is None:
        raise InvalidCatalogRequest(f"{app_name} is not deployed: deploy a first version all at once")
    target, replicas = int(row[0]), max(1, int(row[1]))
    if await store.get_active(conn, app_name) is not None:
        raise InvalidCatalogRequest(f"a rollout of {app_name} is in progress: promote or roll it back first")
    from_version = primary((await aliases.list_aliases(conn, app_name)).get(LIVE_ALIAS, {})) or target
    if to_version == from_version:
        raise InvalidCatalogRequest(f"{app_name} v{to_version} is already live")
    config = parse_config(raw_config, from_version=from_version, to_version=to_version)
    await require_approved(
        conn, app_name, to_version, force=config.force, actor=actor, why=f"{config.strategy} rollout"
    )
    # Its steps give it weight in live: refuse a breaking version without approval now, not mid-way.
    await compatibility.require_live_approval(conn, app_name, [to_version])
    await retire_now(conn, app_name, keep={from_version, to_version})
    serving = await store.serving_versions(conn, app_name)
    if config.strategy == "rolling":
        if serving.get(from_version, (0, 0))[0] < 2:
            raise InvalidCatalogRequest("a rolling update needs at least 2 replica slots of the live version")
    else:
        await store.add_slots(conn, app_name, to_version, replicas - serving.get(to_version, (0, 0))[0])
    record = await store.insert_rollout(conn, app_name, from_version, to_version, config, actor=actor)
    await store.set_deployment_state(
        conn,
        app_name,
        status="rolling-out",
        reason=f"{config.strategy} v{from_version} -> v{to_version}: starting",
    )
    await record_audit(
        conn,
        actor=actor,
        app_name=app_name,
        action="rollout-start",
        detail={
            "rolloutId": record.rollout_id,
            "from": from_version,
            "to": to_version,
            "config": config.to_json(),
        },
    )
    return record


async def retire_now(conn: Conn, app_name: str, *, keep: set[int]) -> None:
    """Retire at once the versions earlier rollouts kept for a while (all but ``keep``)."""
    cur = await conn.execute(
        "SELECT rollout_id, retire_version FROM rollouts WHERE app_name = %s AND retire_version IS NOT NULL",
        (app_name,),
    )
    for rollout_id, version in await cur.fetchall():
        if int(version) not in keep:
            await store.remove_version_slots(conn, app_name, int(version))
        await store.update_rollout(conn, int(rollout_id), retire_version=None, retire_at=None)


async def roll_back_rollout(
    conn: Conn, record: RolloutRecord, *, reason: str, numbers: dict[str, Any], actor: str
) -> None:
    """Traffic back to the previous version at once; the new version's slots go (rolling: move back)."""
    app = record.app_name
    await aliases.set_alias(
        conn, app, LIVE_ALIAS, {record.from_version: 100}, actor=actor, why=f"rollback: {reason}"
    )
    if record.strategy == "rolling":
        await store.retarget_slots(conn, app, record.to_version, record.from_version, EVERY_SLOT)
        await store.update_rollout(conn, record.rollout_id, retire_version=None, retire_at=None)
    else:
        await store.update_rollout(
            conn, record.rollout_id, retire_version=record.to_version, retire_at=ROLLBACK_RETIRE_S
        )
    await store.update_rollout(
        conn, record.rollout_id, state="rolled-back", reason=reason, numbers=numbers, finished_at="now"
    )
    await store.set_deployment_state(
        conn,
        app,
        status="rolled-back",
        reason=f"v{record.to_version} rolled back to v{record.from_version}: {reason}",
        target_version=record.from_version,
    )
    await record_audit(
        conn,
        actor=actor,
        app_name=app,
        action="rollback",
        detail={
            "rolloutId": record.rollout_id,
            "from": record.to_version,
            "to": record.from_version,
            "reason": reason,
            "numbers": numbers,
        },
    )


async def rollback(conn: Conn, app_name: str, *, actor: str = DEFAULT_ACTOR) -> str:
    """Roll back the rollout in progress, or the last one while its previous version is still kept."""
    record = await store.get_active(conn, app_name, lock=True)
    if record is not None:
        await roll_back_rollout(conn, record, reason=f"manual rollback by {actor}", numbers={}, actor=actor)
        return f"rolled {app_name} back from v{record.to_version} to v{record.from_version}"
    recent = await store.list_rollouts(conn, app_name, limit=1)
    last = recent[0] if recent else None
    if (
        last is None
        or last.state != "succeeded"
        or (last.strategy != "rolling" and last.retire_version != last.from_version)
    ):
        raise InvalidCatalogRequest(
            f"nothing to roll back: no rollout of {app_name} in progress and no previous version kept"
        )
    await roll_back_rollout(
        conn, last, reason=f"manual rollback by {actor} after success", numbers={}, actor=actor
    )
    return f"rolled {app_name} back from v{last.to_version} to v{last.from_version}"


async def promote(conn: Conn, app_name: str, *, actor: str = DEFAULT_ACTOR) -> str:
    """Skip to 100 % now (A/B winner, blue-green switch, or a canary one trusts)."""
    record = await store.get_active(conn, app_name, lock=True)
    if record is None:
        raise InvalidCatalogRequest(f"no rollout of {app_name} is in progress")
    await store.update_rollout(
        conn,
        record.rollout_id,
        state="running",
        step=record.settings.final_step,
        step_started_at=None,
        numbers={**record.numbers, "promotedBy": actor},
    )
    await record_audit(
        conn,
        actor=actor,
        app_name=app_name,
        action="promote",
        detail={"rolloutId": record.rollout_id, "version": record.to_version},
    )
    return f"promoting {app_name} v{record.to_version} to 100 %"


async def set_alias(
    conn: Conn,
    app_name: str,
    alias: str,
    weights: dict[int, int],
    *,
    actor: str = DEFAULT_ACTOR,
    force: bool = False,
) -> None:
    """Point an alias anywhere. ``live`` needs approved versions (or ``force``) and no rollout running."""
    aliases.check_weights(weights)  # before any slot is added for them
    if alias == LIVE_ALIAS:
        if await store.get_active(conn, app_name) is not None:
            raise InvalidCatalogRequest(
                f"a rollout of {app_name} is in progress: promote or roll it back first"
            )
        for version, weight in weights.items():
            if weight > 0:
                await require_approved(conn, app_name, version, force=force, actor=actor, why="alias change")
        cur = await conn.execute(
            "SELECT replicas FROM application_deployments WHERE app_name = %s", (app_name,)
        )
        row = await cur.fetchone()
        if row is None:
            raise InvalidCatalogRequest(f"{app_name} is not deployed: deploy a first version all at once")
        slots = await store.serving_versions(conn, app_name)
        for version, weight in weights.items():
            if weight > 0 and version not in slots:
                await store.add_slots(conn, app_name, version, max(1, int(row[0])))
    await aliases.set_alias(conn, app_name, alias, weights, actor=actor)


async def supersede(conn: Conn, app_name: str, *, actor: str) -> None:
    """An all-at-once deploy replaces any rollout in progress and any version kept for rollback."""
    record = await store.get_active(conn, app_name, lock=True)
    if record is not None:
        await store.update_rollout(
            conn,
            record.rollout_id,
            state="rolled-back",
            reason=f"superseded by a deploy by {actor}",
            finished_at="now",
        )
    await conn.execute(
        "UPDATE rollouts SET retire_version = NULL, retire_at = NULL WHERE app_name = %s", (app_name,)
    )
