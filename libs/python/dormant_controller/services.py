"""Publishing service states: ``mesh/services/{svc}`` (retained) = the service's versions, their
functions and whether each serves (read by ``dormant_catalog.status``), so a caller whose call nobody
received learns whether the service, function or version does not exist or why it is not serving.

Every change to the catalog, whoever makes it (``dormant publish``/``deploy``, the gateway, pods,
this controller), lands in Postgres; the controller reads the states back on each tick and on NOTIFY
and publishes the ones that changed. It also keeps ``mesh/services`` retained (the marker: states are
published for this mesh, so a missing one means no such service), and clears the retained state of a
service that is no longer in the catalog (it learns them by subscribing to ``mesh/services/+``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from dormant import wire
from dormant_catalog.db import Database
from dormant_catalog.status import FunctionsCache, service_states

PublishRetained = Callable[[str, bytes], Awaitable[None]]

STATES_FILTER = wire.service_state_filter()
MARKER = orjson.dumps({"publisher": "dormant-controller", "states": STATES_FILTER})


class StatePublisher:
    def __init__(self, db: Database, publish: PublishRetained) -> None:
        self._db = db
        self._publish = publish
        self._published: dict[str, bytes] = {}
        self._retained: set[str] = set()
        self._functions: FunctionsCache = {}
        self._marked = False

    def forget(self) -> None:
        """Publish everything again on the next sync (after a broker reconnect)."""
        self._published.clear()
        self._marked = False

    def seen(self, topic: str, payload: bytes) -> bool:
        """A message of ``mesh/services/+``: remember which services have a retained state."""
        service = wire.parse_service_state_topic(topic)
        if service is None:
            return False
        if payload:
            self._retained.add(service)
        else:
            self._retained.discard(service)
        return True

    async def sync(self) -> None:
        """Publish the states that changed since the last sync; clear those of removed services."""
        async with self._db.transaction() as conn:
            states = await service_states(conn, functions=self._functions)
        if not self._marked:
            await self._publish(wire.service_state_topic(), MARKER)
            self._marked = True
        for app, state in states.items():
            payload = orjson.dumps(state, option=orjson.OPT_SORT_KEYS)
            if self._published.get(app) != payload:
                await self._publish(wire.service_state_topic(app), payload)
                self._published[app] = payload
        for app in sorted((self._retained | set(self._published)) - set(states)):
            await self._publish(wire.service_state_topic(app), b"")
            self._published.pop(app, None)
            self._retained.discard(app)
