"""The MQTT seam: one small async interface over an MQTT 5 client, so the rest of Dormant never touches
a library type.

Everything above this package speaks ``Message`` (``dormant.mqtt.Message``, the one type for a PUBLISH
sent or received: topic, payload bytes, response topic, correlation data, user properties, expiry)
through the ``Transport`` protocol. Two implementations:

* ``NativeTransport`` (``dormant.transport.native``, on Dormant's own asyncio client ``dormant.mqtt``):
  **the default**. It reports PUBACK reason codes (so callers fail fast on "no subscribers") and
  acknowledges on demand (so a runtime acks a request only after its response is out);
* ``AiomqttTransport`` (``dormant.transport.aiomqtt_transport``, aiomqtt over paho), chosen with
  ``DORMANT_MQTT_CLIENT=aiomqtt``; it hides both of those.

Both set TCP_NODELAY. ``new_transport`` builds the configured one, ``connect_transport`` also connects it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..mqtt import Message, no_ack
from ._base import (
    NO_MATCHING_SUBSCRIBERS,
    NOT_AUTHORIZED,
    SESSION_TAKEN_OVER,
    Transport,
    TransportError,
)
from ._takeover import TAKEOVER_LOSSES, TAKEOVER_WINDOW_S, TakeoverWatch
from .native import NativeTransport

if TYPE_CHECKING:
    from .aiomqtt_transport import AiomqttTransport

__all__ = [
    "CLIENT_ENV",
    "NOT_AUTHORIZED",
    "NO_MATCHING_SUBSCRIBERS",
    "SESSION_TAKEN_OVER",
    "TAKEOVER_LOSSES",
    "TAKEOVER_WINDOW_S",
    "AiomqttTransport",
    "Message",
    "NativeTransport",
    "TakeoverWatch",
    "Transport",
    "TransportError",
    "connect_transport",
    "new_transport",
    "no_ack",
]


def __getattr__(name: str) -> Any:
    if name == "AiomqttTransport":
        from .aiomqtt_transport import AiomqttTransport  # lazy: start-up time (aiomqtt and paho, ~90 ms)

        return AiomqttTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


CLIENT_ENV = "DORMANT_MQTT_CLIENT"


def new_transport(
    broker_url: str,
    *,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry_s: int = 0,
    manual_ack: bool = False,
) -> Transport:
    """The transport named by ``$DORMANT_MQTT_CLIENT`` (``native``, the default, or ``aiomqtt``).

    ``manual_ack`` needs the native transport: with aiomqtt every message is acknowledged on receipt.
    """
    kind = os.environ.get(CLIENT_ENV, "native")
    if kind == "native":
        return NativeTransport(
            broker_url,
            client_id=client_id,
            clean_start=clean_start,
            session_expiry_s=session_expiry_s,
            manual_ack=manual_ack,
        )
    if kind != "aiomqtt":
        raise ValueError(f"{CLIENT_ENV} must be 'native' or 'aiomqtt', not {kind!r}")
    from .aiomqtt_transport import AiomqttTransport  # lazy: start-up time (aiomqtt and paho, ~90 ms)

    return AiomqttTransport(
        broker_url, client_id=client_id, clean_start=clean_start, session_expiry_s=session_expiry_s
    )


async def connect_transport(
    broker_url: str,
    *,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry_s: int = 0,
) -> Transport:
    """Open the configured transport, connected."""
    transport = new_transport(
        broker_url, client_id=client_id, clean_start=clean_start, session_expiry_s=session_expiry_s
    )
    await transport.connect()
    return transport
