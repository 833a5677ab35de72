"""``RetainedTopics``: one retained message per service on a family of topics (``mesh/services/{svc}``,
``mesh/config/{svc}``), kept equal to what the catalog says.

It remembers what it published on the current connection (so an unchanged payload is not sent
again), learns from its subscription which services the broker holds a retained message for (so the
message of a service that is gone is cleared, even one an earlier controller published), and clears
those whose service is no longer present.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

PublishRetained = Callable[[str, bytes], Awaitable[None]]


class RetainedTopics:
    def __init__(
        self,
        publish: PublishRetained,
        topic: Callable[[str], str],
        parse: Callable[[str], str | None],
    ) -> None:
        self._publish = publish
        self._topic = topic
        self._parse = parse
        self._published: dict[str, bytes] = {}
        self._retained: set[str] = set()

    def forget(self) -> None:
        """Publish everything again (after a broker reconnect)."""
        self._published.clear()

    def seen(self, topic: str, payload: bytes) -> bool:
        """A message of the subscription: remember which services have a retained message; False when
        ``topic`` is not of this family."""
        service = self._parse(topic)
        if service is None:
            return False
        if payload:
            self._retained.add(service)
        else:
            self._retained.discard(service)
        return True

    async def put(self, service: str, payload: bytes) -> bool:
        """Publish ``payload`` for ``service`` unless it is what was published last; True if sent."""
        if self._published.get(service) == payload:
            return False
        await self._publish(self._topic(service), payload)
        self._published[service] = payload
        return True

    async def clear_absent(self, present: Collection[str]) -> None:
        """Clear the retained message of every service not in ``present``."""
        for service in sorted((self._retained | set(self._published)) - set(present)):
            await self._publish(self._topic(service), b"")
            self._published.pop(service, None)
            self._retained.discard(service)
