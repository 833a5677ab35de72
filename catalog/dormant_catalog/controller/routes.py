"""Publishing route tables: ``mesh/routes/{svc}`` (retained) = alias -> {version: weight}.

A version gets traffic in the published table only while at least one of its slots is serving, so
an SDK client never picks a version nobody answers; an alias left with no serving version is left
out (clients then call ``service/{svc}/{fn}``, which the ``live`` primary's pods serve throughout a
switch). ``$LATEST`` names the newest registered version, when it is serving.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from ..db import Database
from ..rollouts import store

LATEST_ALIAS = "$LATEST"

Publish = Callable[[str, bytes], Awaitable[None]]


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


class RoutePublisher:
    def __init__(self, db: Database, publish: Publish) -> None:
        self._db = db
        self._publish = publish
        self._published: dict[str, bytes] = {}

    def forget(self) -> None:
        """Publish everything again on the next sync (after a broker reconnect)."""
        self._published.clear()

    async def sync(self) -> None:
        """Publish the tables that changed since the last sync."""
        async with self._db.connection() as conn:
            apps = await store.route_apps(conn)
            tables = {}
            for app in apps:
                tables[app] = route_table(
                    await store.aliases(conn, app),
                    await store.serving_versions(conn, app),
                    await store.latest_version(conn, app),
                )
        for app, table in tables.items():
            payload = orjson.dumps(table, option=orjson.OPT_SORT_KEYS)
            if self._published.get(app) != payload:
                await self._publish(app, payload)
                self._published[app] = payload
