"""Queries on ``gateway_functions``: the control-plane settings of each function (service).

A service published with the CLI has no row until someone configures it; reads show it with the
default settings, so the API lists every service the catalog knows.
"""

from __future__ import annotations

from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from ..audit import record_audit
from ..db import Conn
from ..deployments import undeploy
from ..environment import environment_problems, roll_generation
from ..errors import InvalidCatalogRequest, NotFoundInCatalog
from ..live_config import forget_config
from ..names import check_app_name
from ..rollouts.actions import deploy
from ..versions import get_version, latest_version
from .records import FunctionRecord

DEFAULT_RETENTION_S = 30 * 86400
"""How long a deleted function can be restored (``DORMANT_FUNCTION_RETENTION_S``); then it is purged."""

DEFAULTS: dict[str, Any] = {
    "runtime": "python3.11",
    "handler": "service.Service",
    "memory_mb": 256,
    "timeout_s": 30,
}

_COLUMNS = (
    "name, runtime, handler, memory_mb, timeout_s, environment, tags, description, concurrency, owner,"
    " created_at, updated_at, deleted_at"
)

# Rows of gateway_functions, plus one default row per catalog service that has none.
_ALL = (
    f"SELECT {_COLUMNS} FROM gateway_functions"
    " UNION ALL"
    " SELECT a.app_name, %(d_runtime)s, %(d_handler)s, %(d_memory)s, %(d_timeout)s, '{}'::jsonb,"
    " '{}'::jsonb, '', '{}'::jsonb, MIN(a.created_by), MIN(a.created_at), MAX(a.created_at), NULL"
    " FROM application_catalog a WHERE NOT EXISTS"
    " (SELECT 1 FROM gateway_functions f WHERE f.name = a.app_name) GROUP BY a.app_name"
)


def _defaults() -> dict[str, Any]:
    return {
        "d_runtime": DEFAULTS["runtime"],
        "d_handler": DEFAULTS["handler"],
        "d_memory": DEFAULTS["memory_mb"],
        "d_timeout": DEFAULTS["timeout_s"],
    }


async def create_function(
    conn: Conn,
    *,
    name: str,
    runtime: str,
    handler: str,
    memory_mb: int,
    timeout_s: int,
    environment: dict[str, str],
    tags: dict[str, str],
    description: str,
    owner: str,
) -> FunctionRecord | None:
    """Insert (or revive a soft-deleted) function; None when a live one has the name already."""
    check_app_name(name)
    cur = conn.cursor(row_factory=class_row(FunctionRecord))
    await cur.execute(
        "INSERT INTO gateway_functions AS f (name, runtime, handler, memory_mb, timeout_s, environment,"
        " tags, description, owner) VALUES (%(name)s, %(runtime)s, %(handler)s, %(memory)s, %(timeout)s,"
        " %(env)s, %(tags)s, %(description)s, %(owner)s)"
        " ON CONFLICT (name) DO UPDATE SET runtime = EXCLUDED.runtime, handler = EXCLUDED.handler,"
        " memory_mb = EXCLUDED.memory_mb, timeout_s = EXCLUDED.timeout_s,"
        " environment = EXCLUDED.environment, tags = EXCLUDED.tags, description = EXCLUDED.description,"
        " concurrency = '{}'::jsonb, scaling = NULL, owner = EXCLUDED.owner, created_at = now(),"
        " updated_at = now(),"
        " deleted_at = NULL WHERE f.deleted_at IS NOT NULL"
        f" RETURNING {_COLUMNS}",
        {
            "name": name,
            "runtime": runtime,
            "handler": handler,
            "memory": memory_mb,
            "timeout": timeout_s,
            "env": Jsonb(environment),
            "tags": Jsonb(tags),
            "description": description,
            "owner": owner,
        },
    )
    record = await cur.fetchone()
    if record is not None:
        await record_audit(conn, actor=owner, app_name=name, action="create-function", detail={})
    return record


async def get_function(conn: Conn, name: str, *, include_deleted: bool = False) -> FunctionRecord | None:
    cur = conn.cursor(row_factory=class_row(FunctionRecord))
    await cur.execute(
        f"SELECT * FROM ({_ALL}) AS f WHERE name = %(name)s AND (%(deleted)s OR deleted_at IS NULL)",
        {**_defaults(), "name": name, "deleted": include_deleted},
    )
    return await cur.fetchone()


async def list_functions(
    conn: Conn,
    *,
    name_contains: str | None = None,
    runtime: str | None = None,
    tag: tuple[str, str] | None = None,
    include_deleted: bool = False,
    after: str | None = None,
    limit: int = 50,
) -> list[FunctionRecord]:
    """A page of functions ordered by name, starting after ``after`` (keyset pagination)."""
    cur = conn.cursor(row_factory=class_row(FunctionRecord))
    await cur.execute(
        f"SELECT * FROM ({_ALL}) AS f"
        " WHERE (%(deleted)s OR deleted_at IS NULL)"
        " AND (%(contains)s::text IS NULL OR strpos(name, %(contains)s) > 0)"
        " AND (%(runtime)s::text IS NULL OR runtime = %(runtime)s)"
        " AND (%(tag)s::jsonb IS NULL OR tags @> %(tag)s::jsonb)"
        " AND (%(after)s::text IS NULL OR name > %(after)s)"
        " ORDER BY name LIMIT %(limit)s",
        {
            **_defaults(),
            "deleted": include_deleted,
            "contains": name_contains,
            "runtime": runtime,
            "tag": Jsonb({tag[0]: tag[1]}) if tag else None,
            "after": after,
            "limit": limit,
        },
    )
    return await cur.fetchall()


async def update_function(conn: Conn, name: str, changes: dict[str, Any], *, actor: str) -> FunctionRecord:
    """Change some settings (call inside a transaction); a catalog-only service gets its row first."""
    allowed = {
        "runtime",
        "handler",
        "memory_mb",
        "timeout_s",
        "environment",
        "tags",
        "description",
        "concurrency",
        "scaling",
    }
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidCatalogRequest(f"cannot change {', '.join(sorted(unknown))}")
    if "environment" in changes:
        problems = environment_problems(changes["environment"])
        if problems:
            raise InvalidCatalogRequest("; ".join(f"{key}: {why}" if key else why for key, why in problems))
    current = await get_function(conn, name)
    if current is None:
        raise NotFoundInCatalog(f"no function {name!r}")
    await conn.execute(
        "INSERT INTO gateway_functions (name, runtime, handler, memory_mb, timeout_s, owner)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
        (name, current.runtime, current.handler, current.memory_mb, current.timeout_s, current.owner),
    )
    params: dict[str, Any] = {"name": name}
    sets = []
    for column, value in sorted(changes.items()):
        sets.append(f"{column} = %({column})s")
        params[column] = Jsonb(value) if isinstance(value, dict) else value
    cur = conn.cursor(row_factory=class_row(FunctionRecord))
    await cur.execute(
        f"UPDATE gateway_functions SET {', '.join([*sets, 'updated_at = now()'])}"
        f" WHERE name = %(name)s AND deleted_at IS NULL RETURNING {_COLUMNS}",
        params,
    )
    record = await cur.fetchone()
    if record is None:
        raise NotFoundInCatalog(f"no function {name!r}")
    detail = {k: ("<redacted>" if k == "environment" else v) for k, v in changes.items()}
    if "environment" in changes and changes["environment"] != current.environment:
        detail["environmentNames"] = sorted(changes["environment"])
    # Variables and limits reach runtimes with their slot: a change is a new generation of every replica.
    before = {
        "environment": current.environment,
        "memory_mb": current.memory_mb,
        "concurrency": current.concurrency,
    }
    if any(key in changes and changes[key] != value for key, value in before.items()):
        detail["slotsRolled"] = await roll_generation(conn, name)
    await record_audit(conn, actor=actor, app_name=name, action="update-function", detail=detail)
    return record


async def get_scaling(conn: Conn, name: str) -> dict[str, Any] | None:
    """The function's autoscaling settings (``dormant_catalog.scaling.check_scaling``'s JSON); None when
    it has none (the autoscaler leaves it alone). ``NotFoundInCatalog`` for no such function."""
    if await get_function(conn, name) is None:
        raise NotFoundInCatalog(f"no function {name!r}")
    cur = await conn.execute(
        "SELECT scaling FROM gateway_functions WHERE name = %s AND deleted_at IS NULL", (name,)
    )
    row = await cur.fetchone()
    return None if row is None or row[0] is None else dict(row[0])


async def delete_function(conn: Conn, name: str, *, actor: str) -> bool:
    """Undeploy, then soft delete (call inside a transaction); False if there is no such function.

    Undeploying removes the deployment with its replica slots (pods holding them lose their lease
    and drain their runtimes), drops every alias but ``live``, and empties ``live``, so the route
    table published for the service is empty. Versions stay (immutable); the row stays with
    ``deleted_at`` set for the retention period, and its triggers are disabled.
    """
    current = await get_function(conn, name)
    if current is None:
        return False
    undeployed = await undeploy(conn, name, actor=actor) if await latest_version(conn, name) else None
    await conn.execute(
        "INSERT INTO gateway_functions (name, runtime, handler, memory_mb, timeout_s, owner)"
        " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING",
        (name, current.runtime, current.handler, current.memory_mb, current.timeout_s, current.owner),
    )
    await conn.execute(
        "UPDATE gateway_functions SET deleted_at = now(), updated_at = now() WHERE name = %s", (name,)
    )
    await conn.execute(
        "UPDATE gateway_triggers SET disabled_by_delete = enabled, enabled = false WHERE function_name = %s",
        (name,),
    )
    detail = (
        {} if undeployed is None else {"undeployed": {"version": undeployed[0], "replicas": undeployed[1]}}
    )
    await record_audit(conn, actor=actor, app_name=name, action="delete-function", detail=detail)
    return True


async def is_deleted(conn: Conn, name: str) -> bool:
    cur = await conn.execute("SELECT deleted_at IS NOT NULL FROM gateway_functions WHERE name = %s", (name,))
    row = await cur.fetchone()
    return bool(row and row[0])


async def restore_function(conn: Conn, name: str, *, retention_s: float, actor: str) -> FunctionRecord:
    """Undo ``delete_function`` within the retention period (call inside a transaction): the function is
    back, the triggers its deletion disabled are enabled again, and the deployment it had is deployed
    again (the same version and replicas, if that version still exists). ``InvalidCatalogRequest`` when
    it is not deleted; ``NotFoundInCatalog`` when there is no such function or its retention ended."""
    cur = await conn.execute(
        "SELECT deleted_at IS NOT NULL, deleted_at > now() - make_interval(secs => %s::float8)"
        " FROM gateway_functions WHERE name = %s FOR UPDATE",
        (retention_s, name),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFoundInCatalog(f"no function {name!r}")
    if not row[0]:
        raise InvalidCatalogRequest(f"{name!r} is not deleted")
    if not row[1]:
        raise NotFoundInCatalog(
            f"{name!r} was deleted more than {retention_s:g} s ago: it can no longer be restored"
        )
    await conn.execute(
        "UPDATE gateway_functions SET deleted_at = NULL, updated_at = now() WHERE name = %s", (name,)
    )
    cur = await conn.execute(
        "UPDATE gateway_triggers SET enabled = true, disabled_by_delete = false"
        " WHERE function_name = %s AND disabled_by_delete RETURNING trigger_id",
        (name,),
    )
    triggers = sorted(str(r[0]) for r in await cur.fetchall())
    detail: dict[str, Any] = {"triggers": triggers}
    cur = await conn.execute(
        "SELECT detail->'undeployed' FROM audit_log WHERE app_name = %s AND action = 'delete-function'"
        " ORDER BY id DESC LIMIT 1",
        (name,),
    )
    last = await cur.fetchone()
    undeployed = last[0] if last is not None else None
    if isinstance(undeployed, dict) and await get_version(conn, name, int(undeployed["version"])) is not None:
        version, replicas = int(undeployed["version"]), int(undeployed["replicas"])
        if replicas > 0:
            await deploy(conn, name, version=version, replicas=replicas, actor=actor)
            detail["redeployed"] = {"version": version, "replicas": replicas}
    await record_audit(conn, actor=actor, app_name=name, action="restore-function", detail=detail)
    restored = await get_function(conn, name)
    assert restored is not None
    return restored


async def purge_deleted(conn: Conn, *, retention_s: float, actor: str) -> list[str]:
    """Remove the functions deleted longer than ``retention_s`` ago, with their triggers (audited); their
    names. Their versions stay in the catalog (immutable, and unreferenced: version clean-up removes
    them)."""
    cur = await conn.execute(
        "DELETE FROM gateway_functions WHERE deleted_at < now() - make_interval(secs => %s::float8)"
        " RETURNING name",
        (retention_s,),
    )
    names = sorted(str(r[0]) for r in await cur.fetchall())
    if names:
        await conn.execute("DELETE FROM gateway_triggers WHERE function_name = ANY(%s)", (names,))
        await forget_config(conn, names)
    for name in names:
        await record_audit(conn, actor=actor, app_name=name, action="purge-function", detail={})
    return names
