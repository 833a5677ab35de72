"""``AiomqttTransport``: the transport built on aiomqtt (paho underneath), MQTT 5 with TCP_NODELAY.

Chosen with ``DORMANT_MQTT_CLIENT=aiomqtt``. aiomqtt hides the PUBACK reason code (so ``publish``
always returns 0: a call to a topic nobody serves waits for its timeout instead of failing fast) and
acknowledges every message on receipt (no manual acks). ``mqtts://`` connects over TLS with the same
context as the native transport (``_tls.tls_context``). Named so that it does not shadow the
``aiomqtt`` library it wraps.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import AsyncIterator, Sequence

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ..config import parse_broker_url
from ..mqtt import Message
from ..mqtt.connection import publish_problem
from ._base import ConnectsOnEnter, TransportError
from ._tls import tls_context

_NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class _DropBacklogNotices(logging.Filter):
    """aiomqtt warns whenever more than ten publishes wait for their PUBACK: normal under load."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pending publish calls" not in record.msg


_LIBRARY_LOG = logging.getLogger("dormant.transport.aiomqtt")
_LIBRARY_LOG.addFilter(_DropBacklogNotices())


class AiomqttTransport(ConnectsOnEnter):
    """aiomqtt, MQTT 5, TCP_NODELAY (not the default: see the module docstring)."""

    def __init__(
        self,
        broker_url: str,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        keepalive: int = 30,
        max_queued_incoming: int = 0,
    ) -> None:
        address = parse_broker_url(broker_url)
        # aiomqtt takes the TLS context when it is built; a file that cannot be read fails connect().
        self._tls_problem: TransportError | None = None
        tls: ssl.SSLContext | None = None
        try:
            tls = tls_context(address)
        except TransportError as exc:
            self._tls_problem = exc
        connect_props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if session_expiry_s:
            connect_props.SessionExpiryInterval = session_expiry_s
        self._client = aiomqtt.Client(
            address.host,
            address.port,
            username=address.username,
            password=address.password,
            identifier=client_id,
            logger=_LIBRARY_LOG,
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=clean_start,
            keepalive=keepalive,
            properties=connect_props,
            socket_options=_NODELAY,
            tls_context=tls,
            max_queued_incoming_messages=max_queued_incoming or None,
            max_inflight_messages=1000,
            timeout=10,
        )
        self._closed = False

    async def connect(self) -> None:
        if self._tls_problem is not None:
            raise self._tls_problem
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise TransportError(f"cannot connect to the broker: {exc}", _reason(exc)) from exc

    async def close(self, *, end_session: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            pass

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        try:
            await self._client.subscribe([(f, qos) for f in filters])
        except aiomqtt.MqttError as exc:
            raise TransportError(f"subscribe failed: {exc}") from exc

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        try:
            await self._client.unsubscribe(list(filters))
        except aiomqtt.MqttError as exc:
            raise TransportError(f"unsubscribe failed: {exc}") from exc

    async def publish(self, message: Message) -> int:
        # paho would send most invalid topic names and strings, and the broker would then close the
        # connection: refuse them here, as the native client does.
        invalid = publish_problem(message)
        if invalid is not None:
            raise TransportError(f"publish refused before sending: {invalid[0]}", invalid[1])
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if message.response_topic is not None:
            props.ResponseTopic = message.response_topic
        if message.correlation is not None:
            props.CorrelationData = message.correlation
        if message.user_properties:
            props.UserProperty = list(message.user_properties)
        if message.expiry_s is not None:
            props.MessageExpiryInterval = max(1, int(message.expiry_s))
        if message.content_type is not None:
            props.ContentType = message.content_type
        try:
            await self._client.publish(
                message.topic, message.payload, qos=message.qos, retain=message.retain, properties=props
            )
        except aiomqtt.MqttError as exc:
            raise TransportError(f"publish to {message.topic} failed: {exc}") from exc
        return 0  # aiomqtt does not say what the PUBACK said

    async def messages(self) -> AsyncIterator[Message]:
        try:
            async for message in self._client.messages:
                yield _inbound(message)
        except aiomqtt.MqttError as exc:
            if not self._closed:
                raise TransportError(f"connection lost: {exc}", _reason(exc)) from exc


def _reason(error: aiomqtt.MqttError) -> int | None:
    """The MQTT 5 reason code of a refused CONNECT or a broker's DISCONNECT (paho's ``ReasonCode``);
    None for paho's own error numbers, which are no reason codes."""
    code = getattr(error, "rc", None)
    return code.value if isinstance(code, ReasonCode) else None


def _inbound(message: aiomqtt.Message) -> Message:
    props = message.properties
    response_topic = correlation = expiry = None
    user_properties: Sequence[tuple[str, str]] = ()
    if props is not None:
        response_topic = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        expiry = getattr(props, "MessageExpiryInterval", None)
        user_properties = getattr(props, "UserProperty", ())
    payload = message.payload
    if not isinstance(payload, bytes | bytearray):
        payload = str(payload).encode() if payload is not None else b""
    return Message(
        topic=message.topic.value,
        payload=bytes(payload),
        qos=message.qos,
        retain=message.retain,
        response_topic=response_topic,
        correlation=correlation,
        user_properties=user_properties,
        expiry_s=expiry,
    )
