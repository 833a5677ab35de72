"""Erase everything a user owns (GDPR's right to erasure): its documents and the grants it holds.

One transaction, one audit record (``erase_user`` with the counts), run as the runtime (not as the
caller role): the documents of every service, or of one. The audit trail itself is kept (it records
what was done, not the data); grants the user made to others (``granted_by``) are kept too.
"""

from __future__ import annotations

from typing import Any

import psycopg

from dormant.authorizer import check_principal
from dormant.datastore import ErasureCounts, encode_json


async def erase_user(
    conn: psycopg.AsyncConnection[Any],
    user_id: str,
    *,
    actor: str | None = None,
    call_id: str | None = None,
    service: str | None = None,
) -> ErasureCounts:
    """Delete ``user_id``'s documents and grants (in ``service`` only, when given); return the counts.

    ``actor`` and ``call_id`` say who asked and in which call, for the audit record. Commits on
    ``conn`` (a savepoint when ``conn`` is already inside a transaction, which then decides).
    """
    user_id = check_principal(user_id)
    async with conn.transaction():
        documents = await conn.execute(
            "DELETE FROM dormant_data.documents WHERE owner = %(user)s"
            " AND (%(service)s::text IS NULL OR service = %(service)s::text)",
            {"user": user_id, "service": service},
        )
        grants = await conn.execute(
            "DELETE FROM dormant_data.grants WHERE principal = %(user)s"
            " AND (%(service)s::text IS NULL OR database = %(service)s::text)",
            {"user": user_id, "service": service},
        )
        counts = ErasureCounts(documents=max(documents.rowcount, 0), grants=max(grants.rowcount, 0))
        await conn.execute(
            "INSERT INTO dormant_data.audit (actor, service, call_id, action, detail)"
            " VALUES (%s, %s, %s, 'erase_user', %s::jsonb)",
            (
                actor,
                service,
                call_id,
                encode_json({"user": user_id, "documents": counts.documents, "grants": counts.grants}),
            ),
        )
    return counts
