"""SQL for rollouts: the ``rollouts`` rows, and the replica slots a rollout adds, moves and retires.
Every function runs on a connection the caller holds (writes inside a transaction).

Weights are written and read by ``dormant_catalog.aliases`` (the one owner of the aliases table);
``set_weights``, ``aliases``, ``route_apps`` and ``latest_version`` are its and ``versions``' functions
under the names the controller uses.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .. import aliases as _aliases
from .. import versions as _versions
from ..channels import SLOTS_CHANNEL, notify
from ..db import Conn
from .config import RolloutConfig
from .records import RolloutRecord

set_weights = _aliases.set_alias
aliases = _aliases.list_aliases
route_apps = _aliases.aliased_apps
latest_version = _versions.latest_version

_COLUMNS = (
    "rollout_id, app_name, from_version, to_version, strategy, config, state, step, step_started_at,"
    " reason, numbers, retire_version, retire_at, created_by, created_at, updated_at, finished_at"
)


async def serving_versions(conn: Conn, app_name: str) -> dict[int, tuple[int, int]]:
    """Per version: (slots, slots serving it now)."""
    cur = await conn.execute(
        "SELECT version, count(*), count(*) FILTER (WHERE pod_id IS NOT NULL AND lease_expires_at > now()"
        " AND serving_generation = generation) FROM replica_slots WHERE app_name = %s GROUP BY version",
        (app_name,),
    )
    return {int(row[0]): (int(row[1]), int(row[2])) for row in await cur.fetchall()}


# ---------------------------------------------------------------------------------------------- rollouts


async def get_active(conn: Conn, app_name: str, *, lock: bool = False) -> RolloutRecord | None:
    cur = conn.cursor(row_factory=class_row(RolloutRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM rollouts WHERE app_name = %s AND state IN ('running', 'waiting')"
        + (" FOR UPDATE" if lock else ""),
        (app_name,),
    )
    return await cur.fetchone()


async def get_rollout(conn: Conn, rollout_id: int, *, lock: bool = False) -> RolloutRecord | None:
    cur = conn.cursor(row_factory=class_row(RolloutRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM rollouts WHERE rollout_id = %s" + (" FOR UPDATE" if lock else ""),
        (rollout_id,),
    )
    return await cur.fetchone()


async def list_rollouts(conn: Conn, app_name: str, *, limit: int = 20) -> list[RolloutRecord]:
    """The newest ``limit`` rollouts of ``app_name``, newest first."""
    cur = conn.cursor(row_factory=class_row(RolloutRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM rollouts WHERE app_name = %s ORDER BY rollout_id DESC LIMIT %s",
        (app_name, limit),
    )
    return await cur.fetchall()


async def active_rollouts(conn: Conn) -> list[RolloutRecord]:
    cur = conn.cursor(row_factory=class_row(RolloutRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM rollouts WHERE state IN ('running', 'waiting') ORDER BY rollout_id"
    )
    return await cur.fetchall()


async def due_retirements(conn: Conn) -> list[RolloutRecord]:
    cur = conn.cursor(row_factory=class_row(RolloutRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM rollouts WHERE retire_version IS NOT NULL AND retire_at <= now()"
        " ORDER BY rollout_id"
    )
    return await cur.fetchall()


async def insert_rollout(
    conn: Conn, app_name: str, from_version: int, to_version: int, config: RolloutConfig, *, actor: str
) -> RolloutRecord:
    cur = conn.cursor(row_factory=class_row(RolloutRecord))
    await cur.execute(
        "INSERT INTO rollouts (app_name, from_version, to_version, strategy, config, created_by)"
        f" VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (app_name, from_version, to_version, config.strategy, Jsonb(config.to_json()), actor),
    )
    record = await cur.fetchone()
    assert record is not None
    return record


async def update_rollout(conn: Conn, rollout_id: int, **fields: Any) -> None:
    """Set columns (``step_started_at='now'`` and ``finished_at='now'`` mean the database's now())."""
    sets: list[str] = []
    values: list[Any] = []
    for name, value in fields.items():
        if name not in {
            "state",
            "step",
            "step_started_at",
            "reason",
            "numbers",
            "retire_version",
            "retire_at",
            "finished_at",
        }:
            raise ValueError(name)
        if value == "now":
            sets.append(f"{name} = now()")
            continue
        if name == "retire_at" and isinstance(value, float | int):
            sets.append(f"{name} = now() + make_interval(secs => %s::float8)")
            values.append(float(value))
            continue
        sets.append(f"{name} = %s")
        values.append(Jsonb(value) if name == "numbers" else value)
    await conn.execute(
        f"UPDATE rollouts SET {', '.join(sets)}, updated_at = now() WHERE rollout_id = %s",
        (*values, rollout_id),
    )


async def seconds_in_step(conn: Conn, rollout_id: int) -> float | None:
    cur = await conn.execute(
        "SELECT extract(epoch FROM now() - step_started_at) FROM rollouts WHERE rollout_id = %s",
        (rollout_id,),
    )
    row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])


async def set_deployment_state(
    conn: Conn,
    app_name: str,
    *,
    status: str,
    reason: str | None,
    target_version: int | None = None,
    strategy: str | None = None,
) -> None:
    await conn.execute(
        "UPDATE application_deployments SET status = %s, status_reason = %s,"
        " target_version = COALESCE(%s, target_version), strategy = COALESCE(%s, strategy),"
        " updated_at = now()"
        " WHERE app_name = %s",
        (status, reason, target_version, strategy, app_name),
    )


# ---------------------------------------------------------------------------------------------- slots


async def add_slots(conn: Conn, app_name: str, version: int, count: int) -> None:
    """``count`` more replica slots serving ``version``, after the existing ones."""
    await conn.execute(
        "INSERT INTO replica_slots (app_name, slot_index, version)"
        " SELECT %(app)s, base + i, %(version)s FROM generate_series(1, %(count)s) AS i,"
        " (SELECT COALESCE(max(slot_index), -1) AS base FROM replica_slots WHERE app_name = %(app)s) AS b",
        {"app": app_name, "version": version, "count": count},
    )
    await notify(conn, SLOTS_CHANNEL, app_name)


async def retarget_slots(conn: Conn, app_name: str, from_version: int, to_version: int, count: int) -> int:
    """Move up to ``count`` slots of ``from_version`` to ``to_version`` (highest index first)."""
    cur = await conn.execute(
        "UPDATE replica_slots SET version = %(to)s, generation = generation + 1, last_error = NULL,"
        " updated_at = now() WHERE slot_id IN (SELECT slot_id FROM replica_slots WHERE app_name = %(app)s"
        " AND version = %(from)s ORDER BY slot_index DESC LIMIT %(count)s) RETURNING slot_id",
        {"app": app_name, "from": from_version, "to": to_version, "count": count},
    )
    moved = len(await cur.fetchall())
    if moved:
        await notify(conn, SLOTS_CHANNEL, app_name)
    return moved


async def remove_version_slots(conn: Conn, app_name: str, version: int) -> int:
    """Delete the slots of ``version`` (their pods drain and go back to the pool).

    Slot indexes are never reused for a live slot, so the MQTT session of a runtime (keyed by
    service, version and slot index) is never shared by two runtimes.
    """
    cur = await conn.execute(
        "DELETE FROM replica_slots WHERE app_name = %s AND version = %s RETURNING slot_id",
        (app_name, version),
    )
    removed = len(await cur.fetchall())
    await notify(conn, SLOTS_CHANNEL, app_name)
    return removed
