"""Apply a service's collection migrations (``dormant.migrations``) once per (service, version).

Runs as the runtime (not as the caller role): a migration changes every document of the service's
collections whatever its owner. The applied versions are recorded in
``dormant_data.collection_migrations``; a transaction-level advisory lock keyed on the service makes
two pods starting at the same moment apply each migration once (the second waits, then finds it
recorded). The steps, their records and one audit record per migration commit together, or not at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from dormant.datastore import encode_json
from dormant.migrations import (
    AddColumnToCollection,
    Migration,
    MigrationStep,
    PlannedMigration,
    RemoveColumnFromCollection,
    plan,
)

MIGRATION_LOCK_CLASS = 0x446F6D67  # "Domg": first key of the (class, hashtext(service)) advisory lock


async def apply_migrations(
    conn: psycopg.AsyncConnection[Any],
    service: str,
    migrations: Iterable[Migration],
    target_version: int | None = None,
) -> list[PlannedMigration]:
    """Bring ``service``'s documents to ``target_version`` (None: apply every pending ``up``, never go
    down); return what this call ran (empty when another pod had done it). ``ValidationError`` when the
    declared migrations disagree with the recorded ones (``dormant.migrations.plan``)."""
    declared = list(migrations)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (MIGRATION_LOCK_CLASS, service))
        cursor = await conn.execute(
            "SELECT version, name FROM dormant_data.collection_migrations WHERE service = %s", (service,)
        )
        applied = {int(version): str(name) for version, name in await cursor.fetchall()}
        planned = plan(declared, applied, target_version)
        for step in planned:
            for change in step.steps:
                await _apply_step(conn, service, change)
            migration = step.migration
            if step.direction == "up":
                await conn.execute(
                    "INSERT INTO dormant_data.collection_migrations (service, version, name)"
                    " VALUES (%s, %s, %s)",
                    (service, migration.version, migration.name),
                )
            else:
                await conn.execute(
                    "DELETE FROM dormant_data.collection_migrations WHERE service = %s AND version = %s",
                    (service, migration.version),
                )
            await conn.execute(
                "INSERT INTO dormant_data.audit (actor, service, call_id, action, detail)"
                " VALUES (NULL, %s, NULL, %s, %s::jsonb)",
                (
                    service,
                    f"migrate_{step.direction}",
                    encode_json({"version": migration.version, "name": migration.name}),
                ),
            )
    return planned


async def _apply_step(conn: psycopg.AsyncConnection[Any], service: str, change: MigrationStep) -> None:
    if isinstance(change, AddColumnToCollection):
        await conn.execute(
            "UPDATE dormant_data.documents"
            " SET body = body || jsonb_build_object(%(field)s::text, %(default)s::jsonb)"
            " WHERE service = %(service)s AND collection = %(collection)s AND NOT body ? %(field)s::text",
            {
                "field": change.field,
                "default": encode_json(change.default),
                "service": service,
                "collection": change.collection,
            },
        )
    elif isinstance(change, RemoveColumnFromCollection):
        await conn.execute(
            "UPDATE dormant_data.documents SET body = body - %(field)s::text"
            " WHERE service = %(service)s AND collection = %(collection)s AND body ? %(field)s::text",
            {"field": change.field, "service": service, "collection": change.collection},
        )
    else:
        await conn.execute(
            "UPDATE dormant_data.documents"
            " SET body = (body - %(old)s::text) || jsonb_build_object(%(new)s::text, body -> %(old)s::text)"
            " WHERE service = %(service)s AND collection = %(collection)s AND body ? %(old)s::text",
            {"old": change.old, "new": change.new, "service": service, "collection": change.collection},
        )
