"""``RoutePublisher``: publishes each service's route table retained on ``mesh/routes/{svc}`` when it
changes. The tables come from the catalog (``dormant_catalog.controller.route_tables``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from dormant_catalog.controller import route_tables
from dormant_catalog.db import Database

Publish = Callable[[str, bytes], Awaitable[None]]
"""Publish a service's table (service name, payload); the caller picks the topic."""


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
            tables = await route_tables(conn)
        for app, table in tables.items():
            payload = orjson.dumps(table, option=orjson.OPT_SORT_KEYS)
            if self._published.get(app) != payload:
                await self._publish(app, payload)
                self._published[app] = payload
