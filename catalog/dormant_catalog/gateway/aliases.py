"""Writes to ``aliases`` from the control-plane API: named, weighted aliases other than ``live``.

``live`` moves only with a deployment (``Catalog.deploy``); every other alias may point anywhere.
"""

from __future__ import annotations

from psycopg.types.json import Jsonb

from ..audit import record_audit
from ..db import Conn
from ..deployments import ROUTES_CHANNEL
from ..errors import NotFoundInCatalog
from ..names import check_alias, check_app_name


async def set_alias(conn: Conn, app_name: str, alias: str, weights: dict[int, int], *, actor: str) -> None:
    """Point ``alias`` at {version: weight} (call inside a transaction); every version must exist."""
    check_app_name(app_name)
    check_alias(alias)
    cur = await conn.execute(
        "SELECT version FROM application_catalog WHERE app_name = %s AND version = ANY(%s)",
        (app_name, list(weights)),
    )
    found = {int(row[0]) for row in await cur.fetchall()}
    missing = sorted(set(weights) - found)
    if missing:
        raise NotFoundInCatalog(f"{app_name!r} has no version {', '.join(map(str, missing))}")
    encoded = {str(v): w for v, w in weights.items()}
    await conn.execute(
        "INSERT INTO aliases (app_name, alias, weights, updated_by) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (app_name, alias) DO UPDATE SET weights = EXCLUDED.weights,"
        " updated_by = EXCLUDED.updated_by, updated_at = now()",
        (app_name, alias, Jsonb(encoded), actor),
    )
    await record_audit(
        conn, actor=actor, app_name=app_name, action="set-alias", detail={"alias": alias, "weights": encoded}
    )
    await conn.execute("SELECT pg_notify(%s, %s)", (ROUTES_CHANNEL, app_name))


async def alias_exists(conn: Conn, app_name: str, alias: str) -> bool:
    cur = await conn.execute("SELECT 1 FROM aliases WHERE app_name = %s AND alias = %s", (app_name, alias))
    return await cur.fetchone() is not None


async def list_aliases(conn: Conn, app_name: str) -> dict[str, dict[int, int]]:
    cur = await conn.execute(
        "SELECT alias, weights FROM aliases WHERE app_name = %s ORDER BY alias", (app_name,)
    )
    return {str(row[0]): {int(v): int(w) for v, w in row[1].items()} for row in await cur.fetchall()}


async def version_in_use(conn: Conn, app_name: str, version: int) -> str | None:
    """Why ``version`` may not be deleted (an alias or a replica slot uses it), or None."""
    cur = await conn.execute(
        "SELECT alias FROM aliases, jsonb_each_text(weights) AS w(key, value)"
        " WHERE app_name = %s AND w.key = %s AND w.value::numeric > 0 LIMIT 1",
        (app_name, str(version)),
    )
    row = await cur.fetchone()
    if row is not None:
        return f"alias {row[0]!r} routes to it"
    cur = await conn.execute(
        "SELECT 1 FROM replica_slots WHERE app_name = %s AND version = %s LIMIT 1", (app_name, version)
    )
    if await cur.fetchone() is not None:
        return "replica slots serve it"
    return None
