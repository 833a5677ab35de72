"""One MQTT 5 connection on an ``asyncio.Protocol``: connect, subscribe, publish and wait for the
PUBACK's reason code, receive with automatic or manual acknowledgement, keep alive, disconnect; over
TCP, or over TLS with the caller's ``ssl.SSLContext``.

A PUBLISH whose topic name or string properties a broker would refuse (and close the connection for) is
refused here with ``InvalidPublish``, before anything is sent."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any, cast

from . import codec
from .codec import Message, PacketType

DEFAULT_MAX_PACKET = 16 * 1024 * 1024

MessageHandler = Callable[[Message], None]


class MqttError(Exception):
    """The broker refused something, or the connection failed."""

    def __init__(self, message: str, reason: int | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class ConnectionClosed(MqttError):
    """The connection is gone; pending operations fail with this."""


class InvalidPublish(MqttError):
    """A PUBLISH refused before sending: its topic name or a string property is not valid MQTT.

    Sending it would make the broker close the connection for a protocol error (and, for a runtime,
    redeliver the request that led to it), so nothing is sent. ``reason`` is
    ``TOPIC_NAME_INVALID`` or ``MALFORMED_PACKET``, as a broker would have said.
    """


def publish_problem(message: Message) -> tuple[str, int] | None:
    """Why ``message`` must not be sent, and the reason code a broker would give."""
    topic, response_topic = message.topic, message.response_topic
    problem = codec.topic_name_problem(topic)
    if problem is not None:
        return f"invalid topic name {topic[:200]!r}: {problem}", codec.ReasonCode.TOPIC_NAME_INVALID
    if response_topic is not None:
        problem = codec.topic_name_problem(response_topic)
        if problem is not None:
            return (
                f"invalid response topic {response_topic[:200]!r}: {problem}",
                codec.ReasonCode.TOPIC_NAME_INVALID,
            )
    strings = [s for pair in message.user_properties for s in pair]
    if message.content_type is not None:
        strings.append(message.content_type)
    for value in strings:
        problem = mqtt_value_problem(value)
        if problem is not None:
            return f"invalid property string {value[:200]!r}: {problem}", codec.ReasonCode.MALFORMED_PACKET
    return None


def mqtt_value_problem(value: object) -> str | None:
    if not isinstance(value, str):
        return f"not a string but {type(value).__name__}"
    return codec.mqtt_string_problem(value)


def reason_name(reason: int) -> str:
    try:
        return codec.ReasonCode(reason).name.lower().replace("_", " ")
    except ValueError:
        return f"reason 0x{reason:02x}"


class MqttConnection(asyncio.Protocol):
    """Created by ``connect``; not meant to be built by hand."""

    def __init__(self, *, manual_ack: bool, on_message: MessageHandler | None, max_packet_size: int) -> None:
        self.manual_ack = manual_ack
        self._on_message = on_message
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._max_packet = max_packet_size
        self._transport: asyncio.Transport | None = None
        self._rest = b""
        self._loop = asyncio.get_running_loop()
        self._connack: asyncio.Future[tuple[bool, int, dict[int, Any]]] = self._loop.create_future()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next_id = 0
        self._inflight = asyncio.Semaphore(65535)
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._pong = True
        self._keepalive_task: asyncio.Task[None] | None = None
        self.session_present = False
        self.disconnect_reason: int | None = None

    # ------------------------------------------------------------------ protocol callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they have the same methods.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        if self._rest:
            data = self._rest + data
        try:
            packets, used = codec.split_packets(data, self._max_packet)
            for first, body in packets:
                self._dispatch(first, body)
        except (codec.MalformedPacket, IndexError, ValueError) as exc:
            self._fail(MqttError(f"malformed packet from the broker: {exc}"))
            return
        self._rest = data[used:]

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f" ({reason_name(self.disconnect_reason)})" if self.disconnect_reason else ""
        self._fail(ConnectionClosed(f"connection closed{reason}" + (f": {exc}" if exc else "")))

    def _dispatch(self, first: int, body: memoryview) -> None:
        kind = first >> 4
        if kind == PacketType.PUBLISH:
            message = codec.decode_publish(first & 0x0F, body)
            if message.qos == 1 and not self.manual_ack:
                self._write(codec.encode_puback(message.packet_id or 0))
            if self._on_message is not None:
                self._on_message(message)
            else:
                self.queue.put_nowait(message)
        elif kind == PacketType.PUBACK:
            packet_id, reason, _ = codec.decode_ack(body)
            self._resolve(packet_id, reason)
        elif kind in (PacketType.SUBACK, PacketType.UNSUBACK):
            packet_id, reasons = codec.decode_suback(body)
            self._resolve(packet_id, reasons)
        elif kind == PacketType.PINGRESP:
            self._pong = True
        elif kind == PacketType.CONNACK:
            if not self._connack.done():
                self._connack.set_result(codec.decode_connack(body))
        elif kind == PacketType.DISCONNECT:
            self.disconnect_reason, _ = codec.decode_disconnect(body)
        else:
            raise codec.MalformedPacket(f"unexpected packet type {kind}")

    def _resolve(self, packet_id: int, value: Any) -> None:
        future = self._pending.pop(packet_id, None)
        if future is not None and not future.done():
            future.set_result(value)

    def _fail(self, error: MqttError) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        if not self._connack.done():
            self._connack.set_exception(error)
        if not self._closed.done():
            self._closed.set_exception(error)
            self._closed.exception()  # mark retrieved: nobody may be waiting
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        self.queue.put_nowait(None)
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ operations

    @property
    def is_open(self) -> bool:
        return not self._closed.done()

    def _write(self, data: bytes) -> None:
        if self._transport is None or self._closed.done():
            raise ConnectionClosed("connection closed")
        self._transport.write(data)

    def _new_id(self) -> int:
        for _ in range(65535):
            self._next_id = self._next_id % 65535 + 1
            if self._next_id not in self._pending:
                return self._next_id
        raise MqttError("no free packet identifier")

    async def _request(self, packet_id: int, data: bytes) -> Any:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._pending[packet_id] = future
        self._write(data)
        return await future

    async def publish(self, message: Message) -> int:
        """Publish; for QoS 1, wait for the PUBACK and return its reason code (0 = delivered,
        0x10 = no subscriber matched). Reason codes of 0x80 and up raise ``MqttError``; a topic name
        or string property the broker would refuse raises ``InvalidPublish`` and sends nothing."""
        invalid = publish_problem(message)
        if invalid is not None:
            raise InvalidPublish(f"publish refused before sending: {invalid[0]}", invalid[1])
        if message.qos == 0:
            self._write(codec.encode_publish(message))
            return 0
        async with self._inflight:
            packet_id = self._new_id()
            reason: int = await self._request(packet_id, codec.encode_publish(message, packet_id))
        if reason >= 0x80:
            raise MqttError(f"publish to {message.topic} refused: {reason_name(reason)}", reason)
        return reason

    def ack(self, message: Message) -> None:
        """Acknowledge a QoS 1 message received with ``manual_ack``."""
        if message.qos == 1 and message.packet_id is not None and self.is_open:
            self._write(codec.encode_puback(message.packet_id))

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> list[int]:
        packet_id = self._new_id()
        reasons: list[int] = await self._request(
            packet_id, codec.encode_subscribe(packet_id, [(f, qos) for f in filters])
        )
        refused = [(f, r) for f, r in zip(filters, reasons, strict=False) if r >= 0x80]
        if refused:
            raise MqttError(
                "subscribe refused: " + ", ".join(f"{f} ({reason_name(r)})" for f, r in refused),
                refused[0][1],
            )
        return reasons

    async def unsubscribe(self, filters: Sequence[str]) -> list[int]:
        packet_id = self._new_id()
        reasons: list[int] = await self._request(
            packet_id, codec.encode_unsubscribe(packet_id, list(filters))
        )
        return reasons

    async def disconnect(self, *, session_expiry_s: int | None = None) -> None:
        """Send DISCONNECT (normal) and close; ``session_expiry_s=0`` also ends a persistent session."""
        if self.is_open and self._transport is not None:
            self._transport.write(codec.encode_disconnect(session_expiry_s=session_expiry_s))
            self._transport.close()
        with contextlib.suppress(MqttError):
            await self._closed

    async def wait_closed(self) -> None:
        """Return (or raise ConnectionClosed) when the connection ends."""
        await self._closed

    def _start(self, props: dict[int, Any], keepalive: int) -> None:
        self._inflight = asyncio.Semaphore(int(props.get(codec.RECEIVE_MAXIMUM, 65535)))
        keepalive = int(props.get(codec.SERVER_KEEP_ALIVE, keepalive))
        if keepalive:
            self._keepalive_task = self._loop.create_task(self._keep_alive(keepalive))

    async def _keep_alive(self, keepalive: int) -> None:
        interval = max(0.5, keepalive / 2)
        while self.is_open:
            await asyncio.sleep(interval)
            if not self._pong:
                self._fail(ConnectionClosed("the broker stopped answering PINGREQ"))
                return
            self._pong = False
            with contextlib.suppress(ConnectionClosed):
                self._write(codec.PINGREQ)


async def connect(
    host: str,
    port: int,
    *,
    client_id: str,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 30,
    clean_start: bool = True,
    session_expiry_s: int = 0,
    receive_maximum: int = 65535,
    manual_ack: bool = False,
    on_message: MessageHandler | None = None,
    max_packet_size: int = DEFAULT_MAX_PACKET,
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
) -> MqttConnection:
    """Open a connection and complete the CONNECT / CONNACK exchange.

    With ``tls`` the connection is TLS: the handshake (within ``timeout``) checks the broker's
    certificate as the context says, and its name against ``host``."""
    loop = asyncio.get_running_loop()
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                lambda: MqttConnection(
                    manual_ack=manual_ack, on_message=on_message, max_packet_size=max_packet_size
                ),
                host,
                port,
                ssl=tls,
                server_hostname=host if tls is not None else None,
            ),
            timeout,
        )
    except ssl.SSLCertVerificationError as exc:
        raise ConnectionClosed(
            f"cannot connect to {host}:{port}: the broker's TLS certificate is refused: "
            f"{exc.verify_message or exc}"
        ) from exc
    except (OSError, TimeoutError) as exc:
        over = " over TLS" if tls is not None else ""
        raise ConnectionClosed(f"cannot connect to {host}:{port}{over}: {exc}") from exc
    conn._write(
        codec.encode_connect(
            client_id,
            keepalive=keepalive,
            clean_start=clean_start,
            session_expiry_s=session_expiry_s,
            receive_maximum=receive_maximum,
            username=username,
            password=password,
            maximum_packet_size=max_packet_size,
        )
    )
    try:
        session_present, reason, props = await asyncio.wait_for(conn._connack, timeout)
    except TimeoutError:
        conn._fail(ConnectionClosed("no CONNACK from the broker"))
        raise ConnectionClosed(f"no CONNACK from {host}:{port} within {timeout:g}s") from None
    if reason >= 0x80:
        conn._fail(ConnectionClosed("refused"))
        raise MqttError(f"the broker refused the connection: {reason_name(reason)}", reason)
    conn.session_present = session_present
    conn._start(props, keepalive)
    return conn
