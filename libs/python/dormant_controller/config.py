"""Publishing live configuration: ``mesh/config/{svc}`` (retained) = the service's revision of
``dormant_catalog.live_config``, read by its runtimes (``ctx.config``).

Like the service states, the controller reads every service's configuration back on each tick and on
NOTIFY, publishes the ones whose revision it has not published on this connection, and records each as
published in the catalog, which is what ``dormant config set`` and the API wait for. A service with no
configuration gets revision 0 with no values, and ``mesh/config`` holds a retained marker, so a starting
runtime never waits for a revision that is not coming (``dormant_runtime.live_config``). It clears
the retained configuration of a service that is gone (learned by subscribing to ``mesh/config/+``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson

from dormant import wire
from dormant_catalog.db import Database
from dormant_catalog.live_config import configs_to_publish, mark_published

PublishRetained = Callable[[str, bytes], Awaitable[None]]

CONFIG_FILTER = wire.config_filter()
MARKER = orjson.dumps({"publisher": "dormant-controller", "configs": CONFIG_FILTER})


class ConfigPublisher:
    def __init__(self, db: Database, publish: PublishRetained) -> None:
        self._db = db
        self._publish = publish
        self._published: dict[str, bytes] = {}
        self._retained: set[str] = set()
        self._marked = False

    def forget(self) -> None:
        """Publish everything again on the next sync (after a broker reconnect)."""
        self._published.clear()
        self._marked = False

    def seen(self, topic: str, payload: bytes) -> bool:
        """A message of ``mesh/config/+``: remember which services have a retained configuration."""
        service = wire.parse_config_topic(topic)
        if service is None:
            return False
        if payload:
            self._retained.add(service)
        else:
            self._retained.discard(service)
        return True

    async def sync(self) -> None:
        """Publish the revisions not yet published; clear those of services that are gone."""
        async with self._db.transaction() as conn:
            configs = await configs_to_publish(conn)
        for service, config in sorted(configs.items()):
            # Each service's own topic before the marker: a runtime that sees the marker knows that
            # whatever is retained for its service has been published.
            payload = config.payload()
            if self._published.get(service) == payload:
                continue
            await self._publish(wire.config_topic(service), payload)
            self._published[service] = payload
            if config.revision and not config.published:
                async with self._db.transaction() as conn:
                    await mark_published(conn, service, config.revision)
        if not self._marked:
            await self._publish(wire.config_topic(), MARKER)
            self._marked = True
        for service in sorted((self._retained | set(self._published)) - set(configs)):
            await self._publish(wire.config_topic(service), b"")
            self._published.pop(service, None)
            self._retained.discard(service)
