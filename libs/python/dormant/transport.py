"""The MQTT seam: one small async interface over the client library, so the rest of Dormant never
touches a library type.

Two implementations: ``NativeTransport`` (``dormant.mqtt``, Dormant's own asyncio MQTT 5 client; the
default) and ``AiomqttTransport`` (aiomqtt over paho). Only the native one reports PUBACK reason codes
(so callers fail fast on "no subscribers") and acknowledges on demand (so a runtime acks a request
only after its response is out); aiomqtt hides both. ``$DORMANT_MQTT_CLIENT`` picks one.
Everything above this module speaks ``Inbound`` messages and plain values (topic, payload bytes,
response topic, correlation data, user properties, expiry). ``connect_transport`` returns the
default implementation, built on aiomqtt (paho underneath), with TCP_NODELAY on its socket.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from . import mqtt
from .config import parse_broker_url
from .mqtt.connection import publish_problem


class TransportError(Exception):
    """The broker connection failed or was lost; ``reason`` is the MQTT reason code when there was one."""

    def __init__(self, message: str, reason: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason


NO_MATCHING_SUBSCRIBERS = 0x10
NOT_AUTHORIZED = 0x87
SESSION_TAKEN_OVER = 0x8E


def _no_ack() -> None:
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
    ack: Callable[[], None] = _no_ack
    """Send the PUBACK (with ``manual_ack``; a no-op otherwise)."""


class Transport(Protocol):
    """What a Dormant component needs from an MQTT 5 client."""

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


_NODELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class _DropBacklogNotices(logging.Filter):
    """aiomqtt warns whenever more than ten publishes wait for their PUBACK: normal under load."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pending publish calls" not in record.msg


_LIBRARY_LOG = logging.getLogger("dormant.transport.aiomqtt")
_LIBRARY_LOG.addFilter(_DropBacklogNotices())


class AiomqttTransport:
    """The default transport: aiomqtt, MQTT 5, TCP_NODELAY."""

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
            max_queued_incoming_messages=max_queued_incoming or None,
            max_inflight_messages=1000,
            timeout=10,
        )
        self._closed = False

    async def connect(self) -> None:
        try:
            await self._client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise TransportError(f"cannot connect to the broker: {exc}") from exc

    async def close(self, *, end_session: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._client.__aexit__(None, None, None)
        except aiomqtt.MqttError:
            pass

    async def __aenter__(self) -> AiomqttTransport:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

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
    ) -> int:
        # paho would send most invalid topic names and strings, and the broker would then close the
        # connection: refuse them here, as the native client does.
        invalid = publish_problem(topic, response_topic, user_properties, None)
        if invalid is not None:
            raise TransportError(f"publish refused before sending: {invalid[0]}", invalid[1])
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation is not None:
            props.CorrelationData = correlation
        if user_properties:
            props.UserProperty = list(user_properties)
        if expiry_s is not None:
            props.MessageExpiryInterval = max(1, int(expiry_s))
        try:
            await self._client.publish(topic, payload, qos=qos, retain=retain, properties=props)
        except aiomqtt.MqttError as exc:
            raise TransportError(f"publish to {topic} failed: {exc}") from exc
        return 0  # aiomqtt does not say what the PUBACK said

    async def messages(self) -> AsyncIterator[Inbound]:
        try:
            async for message in self._client.messages:
                yield _inbound(message)
        except aiomqtt.MqttError as exc:
            if not self._closed:
                raise TransportError(f"connection lost: {exc}") from exc


def _inbound(message: aiomqtt.Message) -> Inbound:
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
    return Inbound(
        topic=message.topic.value,
        payload=bytes(payload),
        qos=message.qos,
        retain=message.retain,
        response_topic=response_topic,
        correlation=correlation,
        user_properties=user_properties,
        expiry_s=expiry,
    )


class NativeTransport:
    """Dormant's own asyncio MQTT 5 client (``dormant.mqtt``): PUBACK reason codes, manual acks."""

    def __init__(
        self,
        broker_url: str,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        keepalive: int = 30,
        manual_ack: bool = False,
    ) -> None:
        self._address = parse_broker_url(broker_url)
        self._manual_ack = manual_ack
        self._client_id = client_id or f"dormant-{uuid.uuid4().hex[:16]}"
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._keepalive = keepalive
        self._conn: mqtt.MqttConnection | None = None
        self._closed = False

    async def connect(self) -> None:
        try:
            self._conn = await mqtt.connect(
                self._address.host,
                self._address.port,
                client_id=self._client_id,
                username=self._address.username,
                password=self._address.password,
                keepalive=self._keepalive,
                clean_start=self._clean_start,
                session_expiry_s=self._session_expiry_s,
                manual_ack=self._manual_ack,
            )
        except mqtt.MqttError as exc:
            raise TransportError(f"cannot connect to the broker: {exc}", exc.reason) from exc

    @property
    def session_present(self) -> bool:
        return self._conn is not None and self._conn.session_present

    async def __aenter__(self) -> NativeTransport:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _require(self) -> mqtt.MqttConnection:
        if self._conn is None:
            raise TransportError("not connected")
        return self._conn

    async def close(self, *, end_session: bool = False) -> None:
        """Disconnect; ``end_session`` discards a persistent session instead of keeping it."""
        if self._closed:
            return
        self._closed = True
        if self._conn is not None:
            await self._conn.disconnect(
                session_expiry_s=0 if end_session and self._session_expiry_s else None
            )

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        try:
            await self._require().subscribe(filters, qos)
        except mqtt.MqttError as exc:
            raise TransportError(f"subscribe failed: {exc}") from exc

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        try:
            await self._require().unsubscribe(filters)
        except mqtt.MqttError as exc:
            raise TransportError(f"unsubscribe failed: {exc}") from exc

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
    ) -> int:
        try:
            return await self._require().publish(
                topic,
                payload,
                qos=qos,
                retain=retain,
                response_topic=response_topic,
                correlation=correlation,
                user_properties=user_properties,
                expiry_s=None if expiry_s is None else max(1, int(expiry_s)),
            )
        except mqtt.MqttError as exc:
            raise TransportError(f"publish to {topic} failed: {exc}", exc.reason) from exc

    async def messages(self) -> AsyncIterator[Inbound]:
        conn = self._require()
        while True:
            message = await conn.queue.get()
            if message is None:
                if not self._closed:
                    reason = conn.disconnect_reason
                    raise TransportError(
                        "connection lost" + (f" ({mqtt.reason_name(reason)})" if reason else ""), reason
                    )
                return
            ack = _no_ack
            if self._manual_ack and message.qos == 1:
                ack = functools.partial(conn.ack, message)
            yield Inbound(
                topic=message.topic,
                payload=message.payload,
                qos=message.qos,
                retain=message.retain,
                response_topic=message.response_topic,
                correlation=message.correlation,
                user_properties=message.user_properties,
                expiry_s=message.expiry_s,
                dup=message.dup,
                ack=ack,
            )


CLIENT_ENV = "DORMANT_MQTT_CLIENT"


def new_transport(
    broker_url: str,
    *,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry_s: int = 0,
    manual_ack: bool = False,
) -> AiomqttTransport | NativeTransport:
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
    return AiomqttTransport(
        broker_url, client_id=client_id, clean_start=clean_start, session_expiry_s=session_expiry_s
    )


async def connect_transport(
    broker_url: str,
    *,
    client_id: str | None = None,
    clean_start: bool = True,
    session_expiry_s: int = 0,
) -> AiomqttTransport | NativeTransport:
    """Open the configured transport, connected."""
    transport = new_transport(
        broker_url, client_id=client_id, clean_start=clean_start, session_expiry_s=session_expiry_s
    )
    await transport.connect()
    return transport
