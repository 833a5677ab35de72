"""Reading the audit trail (``dormant_data.audit``), as the runtime or an operator; callers cannot."""

from __future__ import annotations

from typing import Any

import psycopg

from dormant.datastore import AuditRecord


async def read_audit(
    conn: psycopg.AsyncConnection[Any],
    *,
    service: str | None = None,
    call_id: str | None = None,
    limit: int = 1000,
) -> list[AuditRecord]:
    """The oldest ``limit`` records, of one service and/or one call when given, in the order written."""
    cursor = await conn.execute(
        "SELECT actor, service, action, collection, document_id, detail, call_id, at"
        " FROM dormant_data.audit"
        " WHERE (%(service)s::text IS NULL OR service = %(service)s::text)"
        "   AND (%(call_id)s::text IS NULL OR call_id = %(call_id)s::text)"
        " ORDER BY id LIMIT %(limit)s",
        {"service": service, "call_id": call_id, "limit": limit},
    )
    return [
        AuditRecord(
            actor=actor,
            service=service_name,
            action=action,
            collection=collection,
            document_id=document_id,
            detail=detail,
            call_id=record_call_id,
            at=at,
        )
        for actor, service_name, action, collection, document_id, detail, record_call_id, at in (
            await cursor.fetchall()
        )
    ]
