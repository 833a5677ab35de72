"""The transport's shared types: ``Transport`` (the protocol every implementation meets), ``Inbound`` (the
one received-message type), ``TransportError`` and the MQTT reason codes Dormant acts on.

Import them from ``dormant.transport``; they live here so that the implementations (``native``,
``aiomqtt_transport``) and the package's factory import them without a cycle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class TransportError(Exception):
    """The broker connection failed or was lost; ``reason`` is the MQTT reason code when there was one."""

    def __init__(self, message: str, reason: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason


NO_MATCHING_SUBSCRIBERS = 0x10
NOT_AUTHORIZED = 0x87
SESSION_TAKEN_OVER = 0x8E


def no_ack() -> None:
    """Acknowledging is a no-op where the library acknowledged on receipt."""


@dataclass(slots=True)
class Inbound:
    """A received PUBLISH, reduced to what Dormant reads."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    response_topic: str | None = None
    correlation: bytes | None = None
    user_properties: Sequence[tuple[str, str]] = ()
    expiry_s: int | None = None
    dup: bool = False
    ack: Callable[[], None] = no_ack
    """Send the PUBACK (with ``manual_ack``; a no-op otherwise)."""


class Transport(Protocol):
    """What a Dormant component needs from an MQTT 5 client."""

    async def connect(self) -> None: ...

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None: ...

    async def unsubscribe(self, filters: Sequence[str]) -> None: ...

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        qos: int = 1,
        retain: bool = False,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        expiry_s: int | None = None,
    ) -> int: ...

    def messages(self) -> AsyncIterator[Inbound]: ...

    async def close(self, *, end_session: bool = False) -> None: ...
