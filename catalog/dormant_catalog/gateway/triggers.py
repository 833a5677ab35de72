"""Queries on ``gateway_triggers`` and ``gateway_trigger_metrics``."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from ..audit import record_audit
from ..db import Conn
from ..names import check_app_name
from .records import TriggerMetrics, TriggerRecord

TRIGGERS_CHANNEL = "dormant_triggers"

_COLUMNS = (
    "trigger_id, function_name, kind, target, config, enabled, created_by, created_at, updated_at,"
    " last_error, last_error_at"
)
_METRIC_COLUMNS = "trigger_id, fired, succeeded, failed, retried, dead_lettered, last_fired_at"


async def create_trigger(
    conn: Conn,
    *,
    function_name: str,
    kind: str,
    target: str,
    config: dict[str, Any],
    enabled: bool,
    actor: str,
) -> TriggerRecord:
    check_app_name(function_name)
    cur = conn.cursor(row_factory=class_row(TriggerRecord))
    await cur.execute(
        "INSERT INTO gateway_triggers (trigger_id, function_name, kind, target, config, enabled, created_by)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (f"trg-{uuid.uuid4().hex[:20]}", function_name, kind, target, Jsonb(config), enabled, actor),
    )
    record = await cur.fetchone()
    assert record is not None
    await conn.execute("INSERT INTO gateway_trigger_metrics (trigger_id) VALUES (%s)", (record.trigger_id,))
    await record_audit(
        conn,
        actor=actor,
        app_name=function_name,
        action="create-trigger",
        detail={"triggerId": record.trigger_id, "kind": kind, "target": target},
    )
    await conn.execute("SELECT pg_notify(%s, %s)", (TRIGGERS_CHANNEL, record.trigger_id))
    return record


async def get_trigger(conn: Conn, function_name: str, trigger_id: str) -> TriggerRecord | None:
    cur = conn.cursor(row_factory=class_row(TriggerRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM gateway_triggers WHERE function_name = %s AND trigger_id = %s",
        (function_name, trigger_id),
    )
    return await cur.fetchone()


async def list_triggers(conn: Conn, function_name: str) -> list[TriggerRecord]:
    cur = conn.cursor(row_factory=class_row(TriggerRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM gateway_triggers WHERE function_name = %s ORDER BY created_at, trigger_id",
        (function_name,),
    )
    return await cur.fetchall()


async def enabled_triggers(conn: Conn, kind: str) -> list[TriggerRecord]:
    """Every enabled trigger of one kind whose function is not deleted."""
    cur = conn.cursor(row_factory=class_row(TriggerRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM gateway_triggers t WHERE kind = %s AND enabled AND NOT EXISTS"
        " (SELECT 1 FROM gateway_functions f WHERE f.name = t.function_name AND f.deleted_at IS NOT NULL)"
        " ORDER BY trigger_id",
        (kind,),
    )
    return await cur.fetchall()


async def set_enabled(
    conn: Conn, function_name: str, trigger_id: str, enabled: bool, *, actor: str
) -> TriggerRecord | None:
    cur = conn.cursor(row_factory=class_row(TriggerRecord))
    await cur.execute(
        "UPDATE gateway_triggers SET enabled = %s, updated_at = now(),"
        " last_error = NULL, last_error_at = NULL"
        f" WHERE function_name = %s AND trigger_id = %s RETURNING {_COLUMNS}",
        (enabled, function_name, trigger_id),
    )
    record = await cur.fetchone()
    if record is not None:
        await record_audit(
            conn,
            actor=actor,
            app_name=function_name,
            action="enable-trigger" if enabled else "disable-trigger",
            detail={"triggerId": trigger_id},
        )
        await conn.execute("SELECT pg_notify(%s, %s)", (TRIGGERS_CHANNEL, trigger_id))
    return record


async def delete_trigger(conn: Conn, function_name: str, trigger_id: str, *, actor: str) -> bool:
    cur = await conn.execute(
        "DELETE FROM gateway_triggers WHERE function_name = %s AND trigger_id = %s RETURNING 1",
        (function_name, trigger_id),
    )
    if await cur.fetchone() is None:
        return False
    await record_audit(
        conn, actor=actor, app_name=function_name, action="delete-trigger", detail={"triggerId": trigger_id}
    )
    await conn.execute("SELECT pg_notify(%s, %s)", (TRIGGERS_CHANNEL, trigger_id))
    return True


async def mark_error(conn: Conn, trigger_id: str, error: str) -> None:
    """Record why the scheduler skips ``trigger_id`` (``updated_at`` is left alone: it keys the skip)."""
    await conn.execute(
        "UPDATE gateway_triggers SET last_error = %s, last_error_at = now() WHERE trigger_id = %s",
        (error.replace("\x00", "\\0"), trigger_id),
    )


async def add_metrics(
    conn: Conn,
    trigger_id: str,
    *,
    fired: int = 0,
    succeeded: int = 0,
    failed: int = 0,
    retried: int = 0,
    dead_lettered: int = 0,
) -> None:
    await conn.execute(
        "UPDATE gateway_trigger_metrics SET fired = fired + %s, succeeded = succeeded + %s,"
        " failed = failed + %s, retried = retried + %s, dead_lettered = dead_lettered + %s,"
        " last_fired_at = CASE WHEN %s > 0 THEN now() ELSE last_fired_at END WHERE trigger_id = %s",
        (fired, succeeded, failed, retried, dead_lettered, fired, trigger_id),
    )


async def get_metrics(conn: Conn, trigger_ids: list[str]) -> dict[str, TriggerMetrics]:
    cur = conn.cursor(row_factory=class_row(TriggerMetrics))
    await cur.execute(
        f"SELECT {_METRIC_COLUMNS} FROM gateway_trigger_metrics WHERE trigger_id = ANY(%s)", (trigger_ids,)
    )
    return {m.trigger_id: m for m in await cur.fetchall()}
