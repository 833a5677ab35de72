"""Queries on ``audit_log``: every change to versions, deployments and aliases leaves a row."""

from __future__ import annotations

from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .db import Conn
from .records import AuditRecord

DEFAULT_ACTOR = "cli"
"""Who a change is recorded as when the caller does not say (the ``dormant`` command)."""


async def record_audit(
    conn: Conn, *, actor: str, app_name: str | None, action: str, detail: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, app_name, action, detail) VALUES (%s, %s, %s, %s)",
        (actor, app_name, action, Jsonb(detail)),
    )


async def list_audit(conn: Conn, app_name: str | None = None, *, limit: int = 100) -> list[AuditRecord]:
    """The newest ``limit`` rows (for one application, or all), oldest first."""
    cur = conn.cursor(row_factory=class_row(AuditRecord))
    await cur.execute(
        "SELECT * FROM (SELECT id, at, actor, app_name, action, detail FROM audit_log"
        " WHERE %(app)s::text IS NULL OR app_name = %(app)s ORDER BY id DESC LIMIT %(limit)s) AS newest"
        " ORDER BY id",
        {"app": app_name, "limit": limit},
    )
    return await cur.fetchall()
