"""Queries on ``application_catalog``: registering immutable versions and reading them back.

``publish_version`` is what publishing calls (``dormant_codegen.publish``): it registers a new version
unless the latest one has the same image, deciding under the same lock that numbers versions, so two
concurrent publishes of the same code register it once.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict, Unpack

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from . import compatibility
from .audit import DEFAULT_ACTOR, record_audit
from .channels import ROUTES_CHANNEL, notify
from .db import Conn
from .errors import InvalidCatalogRequest, NotFoundInCatalog
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
    await _keep_at_most(conn, app_name, MAX_VERSIONS, actor=actor)
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


MAX_VERSIONS = 100
"""A function keeps at most this many versions (the seed's limit): publishing one more removes the
oldest that nothing references, and is refused when every older version is still referenced."""

# Versions of ``app`` that nothing points at: no alias names them (at any weight), no deployment targets
# them, no replica slot serves them, no rollout moves from or to them, no failed start is recorded for
# them; never the newest. Oldest first.
_UNREFERENCED = (
    "SELECT v.version FROM application_catalog AS v WHERE v.app_name = %(app)s"
    " AND v.version < (SELECT max(version) FROM application_catalog WHERE app_name = %(app)s)"
    " AND NOT EXISTS (SELECT 1 FROM aliases AS a, jsonb_object_keys(a.weights) AS k(key)"
    "                 WHERE a.app_name = v.app_name AND k.key = v.version::text)"
    " AND NOT EXISTS (SELECT 1 FROM application_deployments AS d"
    "                 WHERE d.app_name = v.app_name AND d.target_version = v.version)"
    " AND NOT EXISTS (SELECT 1 FROM replica_slots AS s"
    "                 WHERE s.app_name = v.app_name AND s.version = v.version)"
    " AND NOT EXISTS (SELECT 1 FROM rollouts AS r"
    "                 WHERE r.app_name = v.app_name AND v.version IN (r.from_version, r.to_version))"
    " AND NOT EXISTS (SELECT 1 FROM start_failures AS f"
    "                 WHERE f.app_name = v.app_name AND f.version = v.version)"
    " ORDER BY v.version LIMIT %(excess)s"
)


async def _keep_at_most(conn: Conn, app_name: str, limit: int, *, actor: str) -> list[int]:
    """Remove ``app_name``'s oldest unreferenced versions beyond ``limit`` (audited); the versions
    removed. ``InvalidCatalogRequest`` when too few of them are unreferenced (the caller's transaction,
    with the new version, then rolls back)."""
    cur = await conn.execute("SELECT count(*) FROM application_catalog WHERE app_name = %s", (app_name,))
    row = await cur.fetchone()
    excess = (int(row[0]) if row else 0) - limit
    if excess <= 0:
        return []
    cur = await conn.execute(
        f"DELETE FROM application_catalog WHERE app_name = %(app)s AND version IN ({_UNREFERENCED})"
        " RETURNING version",
        {"app": app_name, "excess": excess},
    )
    removed = sorted(int(r[0]) for r in await cur.fetchall())
    if len(removed) < excess:
        raise InvalidCatalogRequest(
            f"{app_name} would have {limit + excess} versions; a function keeps at most {limit}, and only"
            f" {len(removed)} of the older ones are referenced by nothing (an alias, a deployment, a"
            " rollout or a replica slot): free some, then publish again"
        )
    await record_audit(
        conn, actor=actor, app_name=app_name, action="clean-up-versions", detail={"removed": removed}
    )
    return removed


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
    conn: Conn,
    app_name: str,
    version: int,
    status: str,
    *,
    actor: str = DEFAULT_ACTOR,
    why: str | None = None,
) -> VersionRecord:
    """Move a version to another status (the only change a version allows); call inside a transaction.
    ``approved`` also approves a breaking interface change going live (``compatibility.approve``,
    audited with ``why``)."""
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
        detail={"version": version, "status": status, **({"why": why} if why else {})},
    )
    if status == "approved":
        await compatibility.approve(conn, app_name, version, actor=actor, reason=why)
    return record
