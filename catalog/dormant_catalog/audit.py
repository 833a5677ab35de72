"""Queries on ``audit_log``: who did what, of four kinds.

``deployment``: every change to versions, deployments, aliases and settings (``record_audit``, in the
same transaction as the change). ``execution``: a call a runtime ran (callId, function, version,
caller, outcome, duration); ``authorization``: a call refused for its caller (no valid token, a role
missing); ``security``: events worth a look (a token the gateway refused, a callId reused with another
input, a runtime whose session another connection took over). Those three come in batches from
processes that buffer them off their hot path (``record_events``, one COPY per batch) and are purged
after a retention period (``purge_events``); deployment history is kept.

An entry names the actor (a token's subject, ``anonymous``, or a component) and never holds a secret
or a call's input or output.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .db import Conn
from .records import AuditRecord

DEFAULT_ACTOR = "cli"
"""Who a change is recorded as when the caller does not say (the ``dormant`` command)."""

KINDS = ("deployment", "execution", "authorization", "security")
EVENT_KINDS = ("execution", "authorization", "security")
"""The kinds processes report in batches (and that are purged after their retention)."""
DEFAULT_EVENT_RETENTION_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One entry of a kind in ``EVENT_KINDS``, as a process reports it."""

    kind: str
    actor: str
    app_name: str | None
    action: str
    detail: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    """When it happened (None: when it is written)."""


async def record_audit(
    conn: Conn, *, actor: str, app_name: str | None, action: str, detail: dict[str, Any]
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (actor, app_name, action, detail) VALUES (%s, %s, %s, %s)",
        (actor, app_name, action, Jsonb(detail)),
    )


async def record_events(conn: Conn, events: Sequence[AuditEvent]) -> int:
    """Write a batch of events with one COPY; how many."""
    if not events:
        return 0
    async with conn.cursor().copy(
        "COPY audit_log (kind, at, actor, app_name, action, detail) FROM STDIN"
    ) as copy:
        for event in events:
            if event.kind not in EVENT_KINDS:
                raise ValueError(f"not an event kind: {event.kind!r}")
            at = event.at or datetime.now().astimezone()
            detail = orjson.dumps(event.detail).decode()
            await copy.write_row((event.kind, at, event.actor, event.app_name, event.action, detail))
    return len(events)


async def list_audit(
    conn: Conn,
    app_name: str | None = None,
    *,
    limit: int = 100,
    kinds: Sequence[str] | None = ("deployment",),
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
) -> list[AuditRecord]:
    """The newest ``limit`` rows (for one application, or all; of some kinds, one actor, one action,
    since a time), oldest first. By default deployment history only (the other kinds hold an entry
    per call); ``kinds=None`` reads every kind."""
    cur = conn.cursor(row_factory=class_row(AuditRecord))
    await cur.execute(
        "SELECT * FROM (SELECT id, at, actor, app_name, action, detail, kind FROM audit_log"
        " WHERE (%(app)s::text IS NULL OR app_name = %(app)s)"
        " AND (%(kinds)s::text[] IS NULL OR kind = ANY(%(kinds)s))"
        " AND (%(actor)s::text IS NULL OR actor = %(actor)s)"
        " AND (%(action)s::text IS NULL OR action = %(action)s)"
        " AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)"
        " ORDER BY id DESC LIMIT %(limit)s) AS newest ORDER BY id",
        {
            "app": app_name,
            "limit": limit,
            "kinds": None if kinds is None else list(kinds),
            "actor": actor,
            "action": action,
            "since": since,
        },
    )
    return await cur.fetchall()


async def purge_events(conn: Conn, *, older_than: datetime) -> int:
    """Delete execution, authorization and security entries from before ``older_than``; how many."""
    cur = await conn.execute(
        "DELETE FROM audit_log WHERE kind = ANY(%s) AND at < %s", (list(EVENT_KINDS), older_than)
    )
    return cur.rowcount
