"""A small asyncio MQTT 5 client: the packets Dormant uses, manual acks and PUBACK reason codes.

``codec`` encodes and decodes packets; ``connection`` runs one broker connection on an
``asyncio.Protocol``. QoS 0 and 1 only (Dormant never uses QoS 2).
"""

from .codec import Message, ReasonCode, no_ack
from .connection import ConnectionClosed, InvalidPublish, MqttConnection, MqttError, connect, reason_name

__all__ = [
    "ConnectionClosed",
    "InvalidPublish",
    "Message",
    "MqttConnection",
    "MqttError",
    "ReasonCode",
    "connect",
    "no_ack",
    "reason_name",
]
