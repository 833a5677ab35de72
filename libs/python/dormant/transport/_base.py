"""The transport's shared types: ``Transport`` (the protocol every implementation meets), ``TransportError``
and the MQTT reason codes Dormant acts on. Messages, sent and received, are ``dormant.mqtt.Message``.

Import them from ``dormant.transport``; they live here so that the implementations (``native``,
``aiomqtt_transport``) and the package's factory import them without a cycle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Protocol, Self

from ..mqtt.codec import Message


class TransportError(Exception):
    """The broker connection failed or was lost; ``reason`` is the MQTT reason code when there was one."""

    def __init__(self, message: str, reason: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason


NO_MATCHING_SUBSCRIBERS = 0x10
NOT_AUTHORIZED = 0x87
SESSION_TAKEN_OVER = 0x8E


class Transport(Protocol):
    """What a Dormant component needs from an MQTT 5 client."""

    async def connect(self) -> None: ...

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None: ...

    async def unsubscribe(self, filters: Sequence[str]) -> None: ...

    async def publish(self, message: Message) -> int:
        """Send ``message``; for QoS 1 return the PUBACK's reason code where the client reports it
        (0 otherwise)."""
        ...

    def messages(self) -> AsyncIterator[Message]: ...

    async def close(self, *, end_session: bool = False) -> None: ...


class ConnectsOnEnter(ABC):
    """``async with transport:`` connects on entry and closes on exit, for every implementation."""

    @abstractmethod
    async def connect(self) -> None:
        """Connect to the broker."""

    @abstractmethod
    async def close(self, *, end_session: bool = False) -> None:
        """Disconnect (``end_session`` discards a persistent session)."""

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
