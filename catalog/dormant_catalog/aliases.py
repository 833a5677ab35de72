"""The ``aliases`` table: an application's named routes, each {version: weight}. Every write and read
of it is here.

``set_alias`` is the one writer (the deployments, rollouts, the controller and the gateway's API all
use it): it checks the alias name, the weights (whole numbers from 0 to 100 that add up to 100) and
that every version is registered (and, for ``live``, that no breaking version without approval gets
weight: ``compatibility.require_live_approval``), writes the audit log (``set-alias``), and NOTIFYs
``dormant_routes`` (the controller republishes ``mesh/routes/{svc}``) and, for ``live``,
``dormant_slots`` (pods re-read whether their version is the live primary). ``clear_aliases`` empties
them when a function is undeployed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb

from .audit import record_audit
from .channels import ROUTES_CHANNEL, SLOTS_CHANNEL, notify
from .compatibility import require_live_approval
from .db import Conn
from .errors import InvalidCatalogRequest, NotFoundInCatalog
from .names import check_alias, check_app_name
from .records import AliasRecord

LIVE_ALIAS = "live"
"""The alias that ``service/{svc}/{fn}`` reaches and deployments move."""
LATEST_ALIAS = "$LATEST"
"""Not stored: the name the published route table gives the newest version (never a valid alias name)."""
TOTAL_WEIGHT = 100


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_weights(weights: Mapping[int, int]) -> dict[int, int]:
    """``weights`` in version order, or ``InvalidCatalogRequest`` saying what is wrong with them."""
    if not weights:
        raise InvalidCatalogRequest("an alias needs at least one version and its weight")
    for version, weight in weights.items():
        if not _whole(version) or version < 1:
            raise InvalidCatalogRequest(f"invalid version {version!r}: versions are numbered from 1")
        if not _whole(weight) or not 0 <= weight <= TOTAL_WEIGHT:
            raise InvalidCatalogRequest(
                f"the weight of version {version} must be a whole number from 0 to 100, not {weight!r}"
            )
    total = sum(weights.values())
    if total != TOTAL_WEIGHT:
        raise InvalidCatalogRequest(f"weights must add up to 100, not {total}")
    return dict(sorted(weights.items()))


def _encoded(weights: Mapping[int, int]) -> dict[str, int]:
    return {str(v): w for v, w in sorted(weights.items())}


def _decoded(raw: Mapping[str, Any]) -> dict[int, int]:
    return {int(v): int(w) for v, w in raw.items()}


async def set_alias(
    conn: Conn,
    app_name: str,
    alias: str,
    weights: Mapping[int, int],
    *,
    actor: str,
    why: str | None = None,
) -> None:
    """Point ``alias`` at {version: weight} (call inside a transaction); audited and NOTIFYed."""
    check_app_name(app_name)
    check_alias(alias)
    checked = check_weights(weights)
    cur = await conn.execute(
        "SELECT version FROM application_catalog WHERE app_name = %s AND version = ANY(%s)",
        (app_name, list(checked)),
    )
    missing = sorted(set(checked) - {int(row[0]) for row in await cur.fetchall()})
    if missing:
        raise NotFoundInCatalog(f"{app_name!r} has no version {', '.join(map(str, missing))}")
    if alias == LIVE_ALIAS:  # a breaking version goes live only once approved (compatibility.py)
        await require_live_approval(conn, app_name, [v for v, w in checked.items() if w > 0])
    encoded = _encoded(checked)
    await conn.execute(
        "INSERT INTO aliases (app_name, alias, weights, updated_by) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (app_name, alias) DO UPDATE SET weights = EXCLUDED.weights,"
        " updated_by = EXCLUDED.updated_by, updated_at = now()",
        (app_name, alias, Jsonb(encoded), actor),
    )
    detail: dict[str, Any] = {"alias": alias, "weights": encoded}
    if why:
        detail["why"] = why
    await record_audit(conn, actor=actor, app_name=app_name, action="set-alias", detail=detail)
    await notify(conn, ROUTES_CHANNEL, app_name)
    if alias == LIVE_ALIAS:
        await notify(conn, SLOTS_CHANNEL, app_name)


async def clear_aliases(conn: Conn, app_name: str, *, actor: str) -> None:
    """Drop every alias but ``live`` and empty ``live`` (an undeploy): the route table becomes empty."""
    await conn.execute("DELETE FROM aliases WHERE app_name = %s AND alias <> %s", (app_name, LIVE_ALIAS))
    await conn.execute(
        "UPDATE aliases SET weights = '{}'::jsonb, updated_by = %s, updated_at = now()"
        " WHERE app_name = %s AND alias = %s",
        (actor, app_name, LIVE_ALIAS),
    )
    await record_audit(conn, actor=actor, app_name=app_name, action="clear-aliases", detail={})
    await notify(conn, ROUTES_CHANNEL, app_name)
    await notify(conn, SLOTS_CHANNEL, app_name)


async def get_alias(conn: Conn, app_name: str, alias: str = LIVE_ALIAS) -> AliasRecord | None:
    cur = await conn.execute(
        "SELECT weights, updated_at, updated_by FROM aliases WHERE app_name = %s AND alias = %s",
        (app_name, alias),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return AliasRecord(
        app_name=app_name, alias=alias, weights=_decoded(row[0]), updated_at=row[1], updated_by=row[2]
    )


async def list_aliases(conn: Conn, app_name: str) -> dict[str, dict[int, int]]:
    """alias -> {version: weight}, by alias name."""
    cur = await conn.execute(
        "SELECT alias, weights FROM aliases WHERE app_name = %s ORDER BY alias", (app_name,)
    )
    return {str(row[0]): _decoded(row[1]) for row in await cur.fetchall()}


async def aliased_apps(conn: Conn) -> list[str]:
    """The applications that have an alias (the route tables to publish)."""
    cur = await conn.execute("SELECT DISTINCT app_name FROM aliases ORDER BY app_name")
    return [str(row[0]) for row in await cur.fetchall()]


async def version_in_use(conn: Conn, app_name: str, version: int) -> str | None:
    """Why ``version`` may not be deleted (an alias routes to it or a replica slot serves it), or None."""
    cur = await conn.execute(
        "SELECT alias FROM aliases, jsonb_each_text(weights) AS w(key, value)"
        " WHERE app_name = %s AND w.key = %s AND w.value::numeric > 0 ORDER BY alias LIMIT 1",
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
