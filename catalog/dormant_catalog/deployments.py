"""Queries on deployments and their replica slots: the all-at-once ``deploy``, ``scale`` (the
autoscaler's and the operator's replica count change) and reads."""

from __future__ import annotations

from psycopg.rows import class_row

# LIVE_ALIAS and the channels are re-exported for the controller, which imports them from here.
from .aliases import LIVE_ALIAS as LIVE_ALIAS
from .aliases import clear_aliases, set_alias
from .audit import record_audit
from .channels import ROUTES_CHANNEL as ROUTES_CHANNEL
from .channels import SLOTS_CHANNEL as SLOTS_CHANNEL
from .channels import notify
from .db import Conn
from .errors import CatalogError, NotFoundInCatalog
from .names import check_replicas
from .records import DeploymentRecord, SlotRecord
from .versions import latest_version

_DEPLOYMENT_COLUMNS = (
    "app_name, target_version, deployment_action, replicas, strategy, updated_at, deployed_by,"
    " status, status_reason"
)
_SLOT_COLUMNS = (
    "slot_id, app_name, slot_index, version, generation, pod_id, lease_expires_at, claimed_at, last_error,"
    " (pod_id IS NOT NULL AND lease_expires_at > now()) AS lease_live, serving_generation"
)


async def deploy(
    conn: Conn, app_name: str, *, version: int | None, replicas: int, actor: str
) -> DeploymentRecord:
    """All-at-once deploy (call inside a transaction): every slot serves ``version``, ``live`` = 100 %."""
    check_replicas(replicas)
    if version is None:
        version = await latest_version(conn, app_name)
        if version is None:
            raise NotFoundInCatalog(f"no version of {app_name!r} is registered")
    cur = await conn.execute(
        "SELECT 1 FROM application_catalog WHERE app_name = %s AND version = %s", (app_name, version)
    )
    if await cur.fetchone() is None:
        raise NotFoundInCatalog(f"{app_name!r} has no version {version}")

    # The upsert locks the deployment row, so concurrent deploys of one application take turns.
    dcur = conn.cursor(row_factory=class_row(DeploymentRecord))
    await dcur.execute(
        "INSERT INTO application_deployments AS d (app_name, target_version, deployment_action, replicas,"
        " strategy, deployed_by, status, status_reason)"
        " VALUES (%(app)s, %(version)s, 'deploy', %(replicas)s, 'all-at-once', %(actor)s, 'active', NULL)"
        " ON CONFLICT (app_name) DO UPDATE SET target_version = EXCLUDED.target_version,"
        " deployment_action = EXCLUDED.deployment_action, replicas = EXCLUDED.replicas,"
        " strategy = EXCLUDED.strategy, deployed_by = EXCLUDED.deployed_by, status = EXCLUDED.status,"
        " status_reason = NULL, updated_at = now()"
        f" RETURNING {_DEPLOYMENT_COLUMNS}",
        {"app": app_name, "version": version, "replicas": replicas, "actor": actor},
    )
    deployment = await dcur.fetchone()
    assert deployment is not None

    # Keep the first ``replicas`` slots (a rollout may have left them at any index), drop the rest.
    await conn.execute(
        "DELETE FROM replica_slots WHERE slot_id IN (SELECT slot_id FROM replica_slots WHERE app_name = %s"
        " ORDER BY slot_index OFFSET %s)",
        (app_name, replicas),
    )
    # A redeploy is a fresh start: failed starts recorded before it no longer hold pods back.
    await conn.execute("DELETE FROM start_failures WHERE app_name = %s", (app_name,))
    await conn.execute(
        "UPDATE replica_slots SET version = %(version)s, generation = generation + 1, last_error = NULL,"
        " updated_at = now() WHERE app_name = %(app)s AND version <> %(version)s",
        {"app": app_name, "version": version},
    )
    await conn.execute(
        "INSERT INTO replica_slots (app_name, slot_index, version)"
        " SELECT %(app)s, b.base + i, %(version)s"
        " FROM (SELECT COALESCE(max(slot_index), -1) AS base, count(*) AS n FROM replica_slots"
        "       WHERE app_name = %(app)s) AS b,"
        " generate_series(1, %(replicas)s - b.n) AS i",
        {"app": app_name, "version": version, "replicas": replicas},
    )
    await set_alias(conn, app_name, LIVE_ALIAS, {version: 100}, actor=actor)
    await record_audit(
        conn,
        actor=actor,
        app_name=app_name,
        action="deploy",
        detail={"version": version, "replicas": replicas, "strategy": "all-at-once"},
    )
    await notify(conn, SLOTS_CHANNEL, app_name)
    return deployment


class ScalingBlocked(CatalogError):
    """A rollout is moving the deployment's slots (or keeps an old version's): it is not scaled now."""


async def scale(conn: Conn, app_name: str, replicas: int, *, reason: str, actor: str) -> tuple[int, int]:
    """Give the deployment ``replicas`` slots of its target version (call inside a transaction):
    (the count before, after). Slots that stay are left alone (a serving runtime keeps serving);
    new slots come after the highest index; removed slots are the idle ones (no live lease, or not
    serving yet) first, highest index first, then serving ones, highest index first (their pods
    drain: calls in flight finish). Audited as ``scale`` with ``reason``.

    ``NotFoundInCatalog`` when the service is not deployed; ``ScalingBlocked`` while a rollout runs or
    waits, or keeps a replaced version's slots (scaling then would fight the rollout over slots)."""
    check_replicas(replicas)
    cur = await conn.execute(
        "SELECT target_version, replicas FROM application_deployments WHERE app_name = %s FOR UPDATE",
        (app_name,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFoundInCatalog(f"{app_name!r} is not deployed")
    version, before = int(row[0]), int(row[1])
    cur = await conn.execute(
        "SELECT rollout_id, state, retire_version FROM rollouts WHERE app_name = %s"
        " AND (state IN ('running', 'waiting') OR retire_version IS NOT NULL) ORDER BY rollout_id LIMIT 1",
        (app_name,),
    )
    busy = await cur.fetchone()
    if busy is not None:
        what = f"keeps v{busy[2]} until it retires" if busy[1] not in ("running", "waiting") else busy[1]
        raise ScalingBlocked(f"{app_name} is not scaled while rollout #{busy[0]} {what}")
    cur = await conn.execute(
        "SELECT count(*) FROM replica_slots WHERE app_name = %s AND version = %s", (app_name, version)
    )
    row = await cur.fetchone()
    current = int(row[0]) if row else 0
    if replicas == current == before:
        return before, replicas  # nothing to change: not an event
    if replicas < current:
        await conn.execute(
            "DELETE FROM replica_slots WHERE slot_id IN (SELECT slot_id FROM replica_slots"
            " WHERE app_name = %(app)s AND version = %(version)s"
            " ORDER BY (pod_id IS NOT NULL AND lease_expires_at > now()"
            "           AND serving_generation IS NOT DISTINCT FROM generation),"
            " slot_index DESC LIMIT %(n)s)",
            {"app": app_name, "version": version, "n": current - replicas},
        )
    elif replicas > current:
        await conn.execute(
            "INSERT INTO replica_slots (app_name, slot_index, version)"
            " SELECT %(app)s, b.base + i, %(version)s"
            " FROM (SELECT COALESCE(max(slot_index), -1) AS base FROM replica_slots"
            "       WHERE app_name = %(app)s) AS b,"
            " generate_series(1, %(n)s) AS i",
            {"app": app_name, "version": version, "n": replicas - current},
        )
    await conn.execute(
        "UPDATE application_deployments SET replicas = %s, updated_at = now() WHERE app_name = %s",
        (replicas, app_name),
    )
    await record_audit(
        conn,
        actor=actor,
        app_name=app_name,
        action="scale",
        detail={"version": version, "from": before, "to": replicas, "reason": reason},
    )
    await notify(conn, SLOTS_CHANNEL, app_name)
    return before, replicas


async def get_deployment(conn: Conn, app_name: str) -> DeploymentRecord | None:
    cur = conn.cursor(row_factory=class_row(DeploymentRecord))
    await cur.execute(
        f"SELECT {_DEPLOYMENT_COLUMNS} FROM application_deployments WHERE app_name = %s", (app_name,)
    )
    return await cur.fetchone()


async def list_slots(conn: Conn, app_name: str) -> list[SlotRecord]:
    cur = conn.cursor(row_factory=class_row(SlotRecord))
    await cur.execute(
        f"SELECT {_SLOT_COLUMNS} FROM replica_slots WHERE app_name = %s ORDER BY slot_index", (app_name,)
    )
    return await cur.fetchall()


async def undeploy(conn: Conn, app_name: str, *, actor: str) -> tuple[int, int] | None:
    """Stop serving ``app_name``, keeping its versions (call inside a transaction): (the version,
    replicas) it had, or None when it was not deployed. ``NotFoundInCatalog`` when it has no version.

    The deployment goes with its replica slots (and, by the foreign keys, its rollouts); pods holding a
    slot lose it at their next lease renewal, woken at once by ``dormant_slots``, drain their runtime
    and go back to the pool. Every alias but ``live`` is dropped and ``live`` emptied, so the published
    route table is empty and calls are told the service is not deployed."""
    if await latest_version(conn, app_name) is None:
        raise NotFoundInCatalog(f"no service named {app_name!r}")
    cur = await conn.execute(
        "DELETE FROM application_deployments WHERE app_name = %s RETURNING target_version, replicas",
        (app_name,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    # A later deploy is a fresh start: failed starts recorded before it no longer hold pods back.
    await conn.execute("DELETE FROM start_failures WHERE app_name = %s", (app_name,))
    await clear_aliases(conn, app_name, actor=actor)  # NOTIFYs dormant_routes and dormant_slots
    version, replicas = int(row[0]), int(row[1])
    await record_audit(
        conn,
        actor=actor,
        app_name=app_name,
        action="undeploy",
        detail={"version": version, "replicas": replicas},
    )
    return version, replicas
