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

import orjson

from dormant import wire
from dormant_catalog.db import Database
from dormant_catalog.live_config import configs_to_publish, mark_published

from .retained import PublishRetained, RetainedTopics

CONFIG_FILTER = wire.config_filter()
MARKER = orjson.dumps({"publisher": "dormant-controller", "configs": CONFIG_FILTER})


class ConfigPublisher:
    def __init__(self, db: Database, publish: PublishRetained) -> None:
        self._db = db
        self._publish = publish
        self._topics = RetainedTopics(publish, wire.config_topic, wire.parse_config_topic)
        self._marked = False

    def forget(self) -> None:
        """Publish everything again on the next sync (after a broker reconnect)."""
        self._topics.forget()
        self._marked = False

    def seen(self, topic: str, payload: bytes) -> bool:
        """A message of ``mesh/config/+``: remember which services have a retained configuration."""
        return self._topics.seen(topic, payload)

    async def sync(self) -> None:
        """Publish the revisions not yet published; clear those of services that are gone."""
        async with self._db.transaction() as conn:
            configs = await configs_to_publish(conn)
        for service, config in sorted(configs.items()):
            # Each service's own topic before the marker: a runtime that sees the marker knows that
            # whatever is retained for its service has been published.
            await self._topics.put(service, config.payload())
            if config.revision and not config.published:
                async with self._db.transaction() as conn:
                    await mark_published(conn, service, config.revision)
        if not self._marked:
            await self._publish(wire.config_topic(), MARKER)
            self._marked = True
        await self._topics.clear_absent(configs)
