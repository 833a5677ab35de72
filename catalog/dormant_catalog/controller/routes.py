"""Route tables: what the controller publishes retained on ``mesh/routes/{svc}`` = alias -> {version:
weight} (the publishing itself, MQTT I/O, is ``dormant_controller.routes``).

A version gets traffic in the published table only while at least one of its slots is serving, so
an SDK client never picks a version nobody answers; an alias left with no serving version is left
out (clients then call ``service/{svc}/{fn}``, which the ``live`` primary's pods serve throughout a
switch). ``$LATEST`` names the newest registered version, when it is serving.
"""

from __future__ import annotations

from .. import aliases as alias_sql
from .. import versions as version_sql
from ..aliases import LATEST_ALIAS
from ..db import Conn
from ..rollouts import store


def route_table(
    aliases: dict[str, dict[int, int]], serving: dict[int, tuple[int, int]], latest: int | None
) -> dict[str, dict[str, int]]:
    """The table to publish (pure): weights restricted to versions with a serving slot."""
    table: dict[str, dict[str, int]] = {}
    for alias, weights in sorted(aliases.items()):
        ready = {str(v): w for v, w in sorted(weights.items()) if w > 0 and serving.get(v, (0, 0))[1] > 0}
        if ready:
            table[alias] = ready
    if latest is not None and serving.get(latest, (0, 0))[1] > 0:
        table[LATEST_ALIAS] = {str(latest): 100}
    return table


async def route_tables(conn: Conn) -> dict[str, dict[str, dict[str, int]]]:
    """Every service's route table, as ``route_table`` computes it, read in one connection."""
    tables = {}
    for app in await alias_sql.aliased_apps(conn):
        tables[app] = route_table(
            await alias_sql.list_aliases(conn, app),
            await store.serving_versions(conn, app),
            await version_sql.latest_version(conn, app),
        )
    return tables
