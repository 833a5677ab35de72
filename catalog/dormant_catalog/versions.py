"""Queries on ``application_catalog``: registering immutable versions and reading them back."""

from __future__ import annotations

from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .audit import record_audit
from .db import Conn
from .errors import NotFoundInCatalog
from .names import check_app_name, check_status
from .records import VersionRecord

# Second key of the per-application advisory lock that serialises version numbering.
VERSION_LOCK_CLASS = 0x44564E  # "DVN"
ROUTES_CHANNEL = "dormant_routes"
"""NOTIFYed on every change the controller publishes (route tables, service states)."""

_COLUMNS = (
    "app_name, version, app_layer_image, base_image, platform_interface, interface_hash,"
    " schema_definition, topic_mappings, created_at, created_by, status"
)


async def register_version(
    conn: Conn,
    *,
    app_name: str,
    app_layer_image: str,
    base_image: str,
    interface_hash: str,
    schema_definition: dict[str, Any],
    topic_mappings: dict[str, Any],
    platform_interface: str,
    actor: str,
) -> int:
    """Insert the next version of ``app_name`` (call inside a transaction); return its number."""
    check_app_name(app_name)
    await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (VERSION_LOCK_CLASS, app_name))
    cur = await conn.execute(
        "INSERT INTO application_catalog (app_name, version, app_layer_image, base_image,"
        " platform_interface, interface_hash, schema_definition, topic_mappings, created_by)"
        " SELECT %(app)s, COALESCE(MAX(version), 0) + 1, %(layer)s, %(base)s, %(iface)s, %(hash)s,"
        " %(schema)s, %(topics)s, %(actor)s FROM application_catalog WHERE app_name = %(app)s"
        " RETURNING version",
        {
            "app": app_name,
            "layer": app_layer_image,
            "base": base_image,
            "iface": platform_interface,
            "hash": interface_hash,
            "schema": Jsonb(schema_definition),
            "topics": Jsonb(topic_mappings),
            "actor": actor,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    version = int(row[0])
    # The controller republishes the service's state (mesh/services/{svc}) at once: it now exists.
    await conn.execute("SELECT pg_notify(%s, %s)", (ROUTES_CHANNEL, app_name))
    await record_audit(
        conn,
        actor=actor,
        app_name=app_name,
        action="register",
        detail={
            "version": version,
            "app_layer_image": app_layer_image,
            "base_image": base_image,
            "interface_hash": interface_hash,
        },
    )
    return version


async def get_version(conn: Conn, app_name: str, version: int) -> VersionRecord | None:
    cur = conn.cursor(row_factory=class_row(VersionRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM application_catalog WHERE app_name = %s AND version = %s",
        (app_name, version),
    )
    return await cur.fetchone()


async def list_versions(conn: Conn, app_name: str) -> list[VersionRecord]:
    cur = conn.cursor(row_factory=class_row(VersionRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM application_catalog WHERE app_name = %s ORDER BY version",
        (app_name,),
    )
    return await cur.fetchall()


async def latest_version(conn: Conn, app_name: str) -> int | None:
    cur = await conn.execute("SELECT MAX(version) FROM application_catalog WHERE app_name = %s", (app_name,))
    row = await cur.fetchone()
    return None if row is None or row[0] is None else int(row[0])


async def set_status(conn: Conn, app_name: str, version: int, status: str, *, actor: str) -> VersionRecord:
    """Move a version to another status (the only change a version allows); call inside a transaction."""
    check_status(status)
    cur = conn.cursor(row_factory=class_row(VersionRecord))
    await cur.execute(
        f"UPDATE application_catalog SET status = %s WHERE app_name = %s AND version = %s"
        f" RETURNING {_COLUMNS}",
        (status, app_name, version),
    )
    record = await cur.fetchone()
    if record is None:
        raise NotFoundInCatalog(f"{app_name} has no version {version}")
    await record_audit(
        conn,
        actor=actor,
        app_name=app_name,
        action="set-status",
        detail={"version": version, "status": status},
    )
    return record
