"""Queries on ``gateway_invocations``: the persisted queue of asynchronous invocations.

Workers on any number of gateway replicas claim due rows with ``FOR UPDATE SKIP LOCKED`` under a
lease; a row whose worker died is claimed again once its lease has expired. An invocation a trigger
fired counts in the trigger's metrics in the same transaction (fired, succeeded, failed, retried).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from ..db import Conn
from .records import InvocationRecord
from .triggers import add_metrics

INVOCATIONS_CHANNEL = "dormant_invocations"

_COLUMNS = (
    "call_id, app_name, function, version, alias, payload, status, attempts, max_attempts, timeout_s,"
    " next_attempt_at, result, error, source, trigger_id, scheduled_at, created_by, created_at,"
    " updated_at, finished_at"
)


async def enqueue(
    conn: Conn,
    *,
    call_id: str,
    app_name: str,
    function: str,
    version: int | None,
    alias: str | None,
    payload: Any,
    max_attempts: int,
    timeout_s: float,
    created_by: str,
    source: str = "api",
    trigger_id: str | None = None,
    scheduled_at: datetime | None = None,
) -> tuple[InvocationRecord, bool]:
    """Insert the invocation unless its callId exists; returns (the row, whether this call inserted it).
    Call inside a transaction."""
    cur = conn.cursor(row_factory=class_row(InvocationRecord))
    await cur.execute(
        "INSERT INTO gateway_invocations (call_id, app_name, function, version, alias, payload,"
        " max_attempts, timeout_s, created_by, source, trigger_id, scheduled_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" ON CONFLICT (call_id) DO NOTHING RETURNING {_COLUMNS}",
        (
            call_id,
            app_name,
            function,
            version,
            alias,
            Jsonb(payload),
            max_attempts,
            timeout_s,
            created_by,
            source,
            trigger_id,
            scheduled_at,
        ),
    )
    record = await cur.fetchone()
    if record is not None:
        await conn.execute("SELECT pg_notify(%s, %s)", (INVOCATIONS_CHANNEL, call_id))
        if trigger_id is not None:
            await add_metrics(conn, trigger_id, fired=1)
        return record, True
    existing = await get(conn, call_id)
    assert existing is not None
    return existing, False


async def get(conn: Conn, call_id: str) -> InvocationRecord | None:
    cur = conn.cursor(row_factory=class_row(InvocationRecord))
    await cur.execute(f"SELECT {_COLUMNS} FROM gateway_invocations WHERE call_id = %s", (call_id,))
    return await cur.fetchone()


async def claim_due(conn: Conn, worker: str, *, limit: int, lease_s: float) -> list[InvocationRecord]:
    """Take up to ``limit`` due invocations (queued, or running under an expired lease) for ``worker``."""
    cur = conn.cursor(row_factory=class_row(InvocationRecord))
    await cur.execute(
        "UPDATE gateway_invocations AS i SET status = 'running', locked_by = %(worker)s,"
        " locked_until = now() + make_interval(secs => i.timeout_s + %(lease)s), updated_at = now()"
        " WHERE call_id IN (SELECT call_id FROM gateway_invocations"
        "   WHERE (status = 'queued' AND next_attempt_at <= now())"
        "      OR (status = 'running' AND locked_until < now())"
        "   ORDER BY next_attempt_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
        f" RETURNING {_COLUMNS}",
        {"worker": worker, "lease": lease_s, "limit": limit},
    )
    return await cur.fetchall()


async def succeed(conn: Conn, record: InvocationRecord, worker: str, result: Any) -> bool:
    """The attempt ``worker`` holds succeeded; False if it no longer holds it. Call inside a transaction."""
    cur = await conn.execute(
        "UPDATE gateway_invocations SET status = 'succeeded', result = %s, attempts = attempts + 1,"
        " locked_by = NULL, locked_until = NULL, updated_at = now(), finished_at = now()"
        " WHERE call_id = %s AND locked_by = %s AND status = 'running' RETURNING 1",
        (Jsonb(result), record.call_id, worker),
    )
    done = await cur.fetchone() is not None
    if done and record.trigger_id is not None:
        await add_metrics(conn, record.trigger_id, succeeded=1)
    return done


async def fail(
    conn: Conn, record: InvocationRecord, worker: str, error: dict[str, Any], *, retry_in_s: float | None
) -> bool:
    """A failed attempt: retry in ``retry_in_s`` seconds, or (None) move it to the dead letters.
    Call inside a transaction."""
    cur = await conn.execute(
        "UPDATE gateway_invocations SET error = %(error)s, attempts = attempts + 1,"
        " status = CASE WHEN %(retry)s::float8 IS NULL THEN 'dead' ELSE 'queued' END,"
        " next_attempt_at = CASE WHEN %(retry)s::float8 IS NULL THEN next_attempt_at"
        "   ELSE now() + make_interval(secs => %(retry)s::float8) END,"
        " finished_at = CASE WHEN %(retry)s::float8 IS NULL THEN now() END,"
        " locked_by = NULL, locked_until = NULL, updated_at = now()"
        " WHERE call_id = %(call)s AND locked_by = %(worker)s AND status = 'running' RETURNING 1",
        {"error": Jsonb(error), "retry": retry_in_s, "call": record.call_id, "worker": worker},
    )
    done = await cur.fetchone() is not None
    if done and record.trigger_id is not None:
        if retry_in_s is None:
            await add_metrics(conn, record.trigger_id, failed=1, dead_lettered=1)
        else:
            await add_metrics(conn, record.trigger_id, retried=1)
    return done


async def release(conn: Conn, call_id: str, worker: str) -> None:
    """Give back a claimed invocation without counting an attempt (the worker is stopping)."""
    await conn.execute(
        "UPDATE gateway_invocations SET status = 'queued', locked_by = NULL, locked_until = NULL"
        " WHERE call_id = %s AND locked_by = %s AND status = 'running'",
        (call_id, worker),
    )


async def list_invocations(
    conn: Conn,
    *,
    app_name: str | None = None,
    status: str | None = None,
    trigger_id: str | None = None,
    created_by: str | None = None,
    limit: int = 50,
) -> list[InvocationRecord]:
    """The newest invocations matching the filters, newest first."""
    cur = conn.cursor(row_factory=class_row(InvocationRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM gateway_invocations"
        " WHERE (%(app)s::text IS NULL OR app_name = %(app)s)"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " AND (%(trigger)s::text IS NULL OR trigger_id = %(trigger)s)"
        " AND (%(owner)s::text IS NULL OR created_by = %(owner)s)"
        " ORDER BY created_at DESC, call_id LIMIT %(limit)s",
        {"app": app_name, "status": status, "trigger": trigger_id, "owner": created_by, "limit": limit},
    )
    return await cur.fetchall()


async def status_counts(conn: Conn, app_name: str, *, since_s: float) -> dict[str, int]:
    """How many invocations of ``app_name`` created in the last ``since_s`` seconds are in each status."""
    cur = await conn.execute(
        "SELECT status, count(*) FROM gateway_invocations WHERE app_name = %s"
        " AND created_at > now() - make_interval(secs => %s) GROUP BY status",
        (app_name, since_s),
    )
    return {str(row[0]): int(row[1]) for row in await cur.fetchall()}


async def next_due_in(conn: Conn) -> float | None:
    """Seconds until the next queued invocation is due (0 if one is due now); None if none waits."""
    cur = await conn.execute(
        "SELECT GREATEST(0, EXTRACT(EPOCH FROM MIN(CASE WHEN status = 'queued' THEN next_attempt_at"
        " ELSE locked_until END) - now())) FROM gateway_invocations WHERE status IN ('queued', 'running')"
    )
    row = await cur.fetchone()
    return None if row is None or row[0] is None else float(row[0])
