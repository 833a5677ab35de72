"""Queries on ``application_catalog``: registering immutable versions and reading them back.

``publish_version`` is what publishing calls (``dormant_codegen.publish``): it registers a new version
unless the latest one has the same image, deciding under the same lock that numbers versions, so two
concurrent publishes of the same code register it once.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, Unpack

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .audit import DEFAULT_ACTOR, record_audit
from .channels import ROUTES_CHANNEL, notify
from .db import Conn
from .errors import NotFoundInCatalog
from .names import check_app_name, check_status
from .records import VersionRecord

# Second key of the per-application advisory lock that serialises version numbering.
VERSION_LOCK_CLASS = 0x44564E  # "DVN"
DEFAULT_PLATFORM_INTERFACE = "dormant/1"

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
    platform_interface: str = DEFAULT_PLATFORM_INTERFACE,
    actor: str = DEFAULT_ACTOR,
) -> int:
    """Insert the next version of ``app_name`` (call inside a transaction); return its number."""
    await _lock_numbering(conn, app_name)
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
    await notify(conn, ROUTES_CHANNEL, app_name)
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


async def _lock_numbering(conn: Conn, app_name: str) -> None:
    """Hold the application's numbering lock until the transaction ends."""
    check_app_name(app_name)
    await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (VERSION_LOCK_CLASS, app_name))


class NewVersion(TypedDict):
    """What ``register_version`` takes, for ``publish_version`` to pass on."""

    app_name: str
    app_layer_image: str
    base_image: str
    interface_hash: str
    schema_definition: dict[str, Any]
    topic_mappings: dict[str, Any]
    platform_interface: NotRequired[str]
    actor: NotRequired[str]


async def publish_version(conn: Conn, **version: Unpack[NewVersion]) -> tuple[int, bool]:
    """(version, whether it is new): the latest version when it has ``app_layer_image`` already
    (publishing unchanged code, like AWS Lambda's PublishVersion), else a newly registered one.
    Call inside a transaction."""
    app_name = version["app_name"]
    await _lock_numbering(conn, app_name)
    cur = await conn.execute(
        "SELECT version, app_layer_image FROM application_catalog WHERE app_name = %s"
        " ORDER BY version DESC LIMIT 1",
        (app_name,),
    )
    row = await cur.fetchone()
    if row is not None and row[1] == version["app_layer_image"]:
        return int(row[0]), False
    return await register_version(conn, **version), True


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


async def set_status(
    conn: Conn, app_name: str, version: int, status: str, *, actor: str = DEFAULT_ACTOR
) -> VersionRecord:
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
