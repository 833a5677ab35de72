"""A small asyncio MQTT 5 client: the packets Dormant uses, manual acks and PUBACK reason codes.

``codec`` encodes and decodes packets; ``connection`` runs one broker connection on an
``asyncio.Protocol``. QoS 0 and 1 only (Dormant never uses QoS 2).
"""

from .codec import Publish, ReasonCode
from .connection import ConnectionClosed, InvalidPublish, MqttConnection, MqttError, connect, reason_name

__all__ = [
    "ConnectionClosed",
    "InvalidPublish",
    "MqttConnection",
    "MqttError",
    "Publish",
    "ReasonCode",
    "connect",
    "reason_name",
]
