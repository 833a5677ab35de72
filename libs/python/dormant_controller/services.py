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

import orjson

from dormant import wire
from dormant_catalog.db import Database
from dormant_catalog.status import FunctionsCache, service_states

from .retained import PublishRetained, RetainedTopics

STATES_FILTER = wire.service_state_filter()
MARKER = orjson.dumps({"publisher": "dormant-controller", "states": STATES_FILTER})


class StatePublisher:
    def __init__(self, db: Database, publish: PublishRetained) -> None:
        self._db = db
        self._publish = publish
        self._topics = RetainedTopics(publish, wire.service_state_topic, wire.parse_service_state_topic)
        self._functions: FunctionsCache = {}
        self._marked = False

    def forget(self) -> None:
        """Publish everything again on the next sync (after a broker reconnect)."""
        self._topics.forget()
        self._marked = False

    def seen(self, topic: str, payload: bytes) -> bool:
        """A message of ``mesh/services/+``: remember which services have a retained state."""
        return self._topics.seen(topic, payload)

    async def sync(self) -> None:
        """Publish the states that changed since the last sync; clear those of removed services."""
        async with self._db.transaction() as conn:
            states = await service_states(conn, functions=self._functions)
        if not self._marked:
            await self._publish(wire.service_state_topic(), MARKER)
            self._marked = True
        for app, state in states.items():
            await self._topics.put(app, orjson.dumps(state, option=orjson.OPT_SORT_KEYS))
        await self._topics.clear_absent(states)
