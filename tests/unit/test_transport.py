"""The transport package without a broker: the factory, and how each implementation maps its client's
errors, properties and acknowledgements onto ``Transport`` and ``Message``.

Round trips through a real broker are in tests/integration/test_transports.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import dormant.mqtt
import dormant.transport
from dormant.mqtt import MqttError, ReasonCode, no_ack
from dormant.transport import (
    CLIENT_ENV,
    SESSION_TAKEN_OVER,
    AiomqttTransport,
    Message,
    NativeTransport,
    TransportError,
    connect_transport,
    new_transport,
)
from dormant.transport import aiomqtt_transport as aiomqtt_module

URL = "mqtt://ann:pw@broker.invalid:1999"

# ------------------------------------------------------------------------------------------ factory


async def test_the_native_transport_is_the_default_and_the_only_one_with_manual_acks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CLIENT_ENV, raising=False)
    transport = new_transport(URL, client_id="c1", manual_ack=True)
    assert isinstance(transport, NativeTransport) and transport._manual_ack
    monkeypatch.setenv(CLIENT_ENV, "aiomqtt")
    assert isinstance(new_transport(URL), AiomqttTransport)
    monkeypatch.setenv(CLIENT_ENV, "paho")
    with pytest.raises(ValueError, match=f"{CLIENT_ENV} must be 'native' or 'aiomqtt', not 'paho'"):
        new_transport(URL)


def test_the_aiomqtt_transport_is_imported_on_first_use() -> None:
    assert dormant.transport.AiomqttTransport is AiomqttTransport
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        dormant.transport.Nothing  # noqa: B018


# ------------------------------------------------------------------------------------------ native


class FakeConnection:
    """What ``dormant.mqtt.connect`` returns, recording what the transport asked of it."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self.session_present = True
        self.disconnect_reason: int | None = None
        self.published: list[Message] = []
        self.acked: list[Message] = []
        self.subscribed: list[tuple[list[str], int]] = []
        self.unsubscribed: list[list[str]] = []
        self.disconnected: list[int | None] = []
        self.error: MqttError | None = None
        self.reason = 0

    def _maybe_fail(self) -> None:
        if self.error is not None:
            raise self.error

    async def publish(self, message: Message) -> int:
        self._maybe_fail()
        self.published.append(message)
        return self.reason

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> list[int]:
        self._maybe_fail()
        self.subscribed.append((list(filters), qos))
        return [qos]

    async def unsubscribe(self, filters: Sequence[str]) -> list[int]:
        self._maybe_fail()
        self.unsubscribed.append(list(filters))
        return [0]

    async def disconnect(self, *, session_expiry_s: int | None = None) -> None:
        self.disconnected.append(session_expiry_s)

    def ack(self, message: Message) -> None:
        self.acked.append(message)


class Connector:
    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.refuse: MqttError | None = None

    async def connect(self, host: str, port: int, **kwargs: Any) -> FakeConnection:
        if self.refuse is not None:
            raise self.refuse
        conn = FakeConnection(host=host, port=port, **kwargs)
        self.connections.append(conn)
        return conn


@pytest.fixture
def connector(monkeypatch: pytest.MonkeyPatch) -> Connector:
    fake = Connector()
    monkeypatch.setattr(dormant.mqtt, "connect", fake.connect)
    return fake


async def test_connecting_passes_the_url_and_session_settings(connector: Connector) -> None:
    transport = NativeTransport(
        URL, client_id="svc-1", clean_start=False, session_expiry_s=120, keepalive=7, manual_ack=True
    )
    assert not transport.session_present
    async with transport:
        assert transport.session_present
    [conn] = connector.connections
    assert conn.kwargs == {
        "host": "broker.invalid",
        "port": 1999,
        "client_id": "svc-1",
        "username": "ann",
        "password": "pw",
        "keepalive": 7,
        "clean_start": False,
        "session_expiry_s": 120,
        "manual_ack": True,
        "tls": None,
    }
    assert conn.disconnected == [None]  # leaving the block keeps a persistent session


async def test_a_transport_without_a_client_id_gets_a_random_one(connector: Connector) -> None:
    first, second = NativeTransport(URL), NativeTransport(URL)
    await first.connect()
    await second.connect()
    ids = [c.kwargs["client_id"] for c in connector.connections]
    assert ids[0] != ids[1] and all(i.startswith("dormant-") and len(i) == 24 for i in ids)
    await first.close()
    await second.close()


async def test_connect_transport_returns_it_connected(connector: Connector) -> None:
    transport = await connect_transport(URL, client_id="x")
    assert isinstance(transport, NativeTransport) and len(connector.connections) == 1
    await transport.close()


async def test_a_refused_connection_keeps_its_reason_code(connector: Connector) -> None:
    connector.refuse = MqttError(
        "the broker refused the connection: not authorized", ReasonCode.NOT_AUTHORIZED
    )
    with pytest.raises(TransportError, match="cannot connect to the broker") as caught:
        await NativeTransport(URL).connect()
    assert caught.value.reason == ReasonCode.NOT_AUTHORIZED


async def test_nothing_can_be_done_before_connecting(connector: Connector) -> None:
    transport = NativeTransport(URL)
    with pytest.raises(TransportError, match="not connected"):
        await transport.publish(Message("t", b""))
    with pytest.raises(TransportError, match="not connected"):
        await transport.subscribe(["t"])
    with pytest.raises(TransportError, match="not connected"):
        await anext(aiter(transport.messages()))
    await transport.close()  # closing what never connected is fine


async def test_publish_returns_the_puback_reason_and_never_sends_a_zero_expiry(connector: Connector) -> None:
    async with NativeTransport(URL) as transport:
        conn = connector.connections[0]
        conn.reason = ReasonCode.NO_MATCHING_SUBSCRIBERS
        short = Message("t/1", b"x", expiry_s=0)
        assert await transport.publish(short) == ReasonCode.NO_MATCHING_SUBSCRIBERS
        await transport.publish(Message("t/2", b"y"))
        sent_short, sent_plain = conn.published
        assert sent_short.expiry_s == 1  # MQTT has no sub-second expiry; 0 would mean "never"
        assert short.expiry_s == 0  # the caller's message is not changed
        assert sent_plain.expiry_s is None


async def test_client_errors_become_transport_errors_with_their_reason(connector: Connector) -> None:
    async with NativeTransport(URL) as transport:
        conn = connector.connections[0]
        conn.error = MqttError("publish to t refused: quota exceeded", ReasonCode.QUOTA_EXCEEDED)
        with pytest.raises(TransportError, match="publish to t/9 failed") as caught:
            await transport.publish(Message("t/9", b""))
        assert caught.value.reason == ReasonCode.QUOTA_EXCEEDED
        with pytest.raises(TransportError, match="subscribe failed"):
            await transport.subscribe(["a/#"])
        with pytest.raises(TransportError, match="unsubscribe failed"):
            await transport.unsubscribe(["a/#"])
        conn.error = None
        await transport.subscribe(["a/#", "b"], qos=0)
        await transport.unsubscribe(["b"])
        assert conn.subscribed == [(["a/#", "b"], 0)] and conn.unsubscribed == [["b"]]


async def test_with_manual_acks_a_qos1_message_is_acknowledged_only_on_demand(connector: Connector) -> None:
    async with NativeTransport(URL, manual_ack=True) as transport:
        conn = connector.connections[0]
        conn.queue.put_nowait(Message("t", b"1", qos=1, packet_id=5))
        conn.queue.put_nowait(Message("t", b"0", qos=0))
        messages = aiter(transport.messages())
        first = await anext(messages)
        assert conn.acked == []  # received, not acknowledged yet
        first.ack()
        assert conn.acked == [first]
        second = await anext(messages)
        assert second.ack is no_ack  # QoS 0 has nothing to acknowledge


async def test_without_manual_acks_messages_carry_no_ack(connector: Connector) -> None:
    async with NativeTransport(URL) as transport:
        connector.connections[0].queue.put_nowait(Message("t", b"1", qos=1, packet_id=5))
        message = await anext(aiter(transport.messages()))
        assert message.ack is no_ack


async def test_a_lost_connection_ends_the_messages_with_its_reason(connector: Connector) -> None:
    async with NativeTransport(URL) as transport:
        conn = connector.connections[0]
        conn.disconnect_reason = SESSION_TAKEN_OVER
        conn.queue.put_nowait(None)
        with pytest.raises(TransportError, match="connection lost \\(session taken over\\)") as caught:
            await anext(aiter(transport.messages()))
        assert caught.value.reason == SESSION_TAKEN_OVER


async def test_after_close_the_messages_simply_end(connector: Connector) -> None:
    transport = NativeTransport(URL, session_expiry_s=60)
    await transport.connect()
    conn = connector.connections[0]
    await transport.close(end_session=True)
    await transport.close(end_session=True)  # once only
    assert conn.disconnected == [0]  # ending the session: expiry 0 on the DISCONNECT
    conn.queue.put_nowait(None)
    assert [m async for m in transport.messages()] == []


async def test_ending_a_session_that_does_not_persist_needs_no_expiry(connector: Connector) -> None:
    transport = NativeTransport(URL)
    await transport.connect()
    await transport.close(end_session=True)
    assert connector.connections[0].disconnected == [None]


# ------------------------------------------------------------------------------------------ aiomqtt


class FakeAiomqttClient:
    """Stands in for ``aiomqtt.Client`` inside an ``AiomqttTransport``."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.subscribed: list[list[tuple[str, int]]] = []
        self.unsubscribed: list[list[str]] = []
        self.entered = 0
        self.exited = 0
        self.error: aiomqtt.MqttError | None = None
        self.incoming: list[aiomqtt.Message | aiomqtt.MqttError] = []

    def _maybe_fail(self) -> None:
        if self.error is not None:
            raise self.error

    async def __aenter__(self) -> FakeAiomqttClient:
        self._maybe_fail()
        self.entered += 1
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.exited += 1
        self._maybe_fail()

    async def publish(
        self, topic: str, payload: bytes, *, qos: int, retain: bool, properties: Properties
    ) -> None:
        self._maybe_fail()
        self.published.append(
            {"topic": topic, "payload": payload, "qos": qos, "retain": retain, "properties": properties}
        )

    async def subscribe(self, topics: list[tuple[str, int]]) -> None:
        self._maybe_fail()
        self.subscribed.append(topics)

    async def unsubscribe(self, topics: list[str]) -> None:
        self._maybe_fail()
        self.unsubscribed.append(topics)

    @property
    def messages(self) -> AsyncIterator[aiomqtt.Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[aiomqtt.Message]:
        for item in self.incoming:
            if isinstance(item, aiomqtt.MqttError):
                raise item
            yield item


def aiomqtt_transport(**kwargs: Any) -> tuple[AiomqttTransport, FakeAiomqttClient]:
    transport = AiomqttTransport(URL, client_id="paho-1", **kwargs)
    fake = FakeAiomqttClient()
    transport._client = fake  # type: ignore[assignment]
    return transport, fake


async def test_aiomqtt_publish_maps_every_property_and_reports_no_reason() -> None:
    transport, fake = aiomqtt_transport()
    message = Message(
        "svc/f",
        b"{}",
        qos=1,
        retain=True,
        response_topic="reply/x",
        correlation=b"\x01id",
        user_properties=[("deadline", "5"), ("k", "v")],
        expiry_s=0,
        content_type="application/json",
    )
    assert await transport.publish(message) == 0
    [sent] = fake.published
    props = sent["properties"]
    assert (sent["topic"], sent["payload"], sent["qos"], sent["retain"]) == ("svc/f", b"{}", 1, True)
    assert props.ResponseTopic == "reply/x" and props.CorrelationData == b"\x01id"
    assert props.UserProperty == [("deadline", "5"), ("k", "v")]
    assert props.MessageExpiryInterval == 1 and props.ContentType == "application/json"
    await transport.publish(Message("svc/g", b""))
    bare = fake.published[1]["properties"]
    assert not hasattr(bare, "ResponseTopic") and not hasattr(bare, "MessageExpiryInterval")


async def test_aiomqtt_refuses_an_invalid_property_string_before_sending() -> None:
    transport, fake = aiomqtt_transport()
    with pytest.raises(TransportError, match="refused before sending") as caught:
        await transport.publish(Message("svc/f", b"", user_properties=[("k", "bad\x00value")]))
    assert caught.value.reason == ReasonCode.MALFORMED_PACKET and fake.published == []


async def test_aiomqtt_errors_become_transport_errors() -> None:
    transport, fake = aiomqtt_transport()
    fake.error = aiomqtt.MqttError("broken pipe")
    with pytest.raises(TransportError, match="cannot connect"):
        await transport.connect()
    with pytest.raises(TransportError, match="publish to svc/f failed"):
        await transport.publish(Message("svc/f", b""))
    with pytest.raises(TransportError, match="subscribe failed"):
        await transport.subscribe(["a"])
    with pytest.raises(TransportError, match="unsubscribe failed"):
        await transport.unsubscribe(["a"])
    await transport.close()  # an error while disconnecting is swallowed
    await transport.close()
    assert fake.exited == 1


async def test_aiomqtt_subscribes_each_filter_with_its_qos() -> None:
    transport, fake = aiomqtt_transport()
    async with transport:
        await transport.subscribe(["a/#", "b"], qos=0)
        await transport.unsubscribe(["b"])
    assert fake.subscribed == [[("a/#", 0), ("b", 0)]] and fake.unsubscribed == [["b"]]
    assert fake.entered == fake.exited == 1


def _paho_message(payload: Any, props: Properties | None) -> aiomqtt.Message:
    return aiomqtt.Message("in/t", payload, qos=1, retain=False, mid=3, properties=props)


async def test_aiomqtt_messages_arrive_as_dormant_messages() -> None:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = "reply/y"
    props.CorrelationData = b"cid"
    props.MessageExpiryInterval = 9
    props.UserProperty = [("a", "1")]
    transport, fake = aiomqtt_transport()
    fake.incoming = [_paho_message(b"full", props), _paho_message("text", None), _paho_message(None, None)]
    received = [m async for m in transport.messages()]
    full, text, empty = received
    assert (full.topic, full.payload, full.qos, full.response_topic) == ("in/t", b"full", 1, "reply/y")
    assert full.correlation == b"cid" and full.expiry_s == 9 and list(full.user_properties) == [("a", "1")]
    assert text.payload == b"text" and text.response_topic is None and text.correlation is None
    assert empty.payload == b""


async def test_aiomqtt_a_lost_connection_ends_the_messages_with_an_error_unless_closed() -> None:
    transport, fake = aiomqtt_transport()
    fake.incoming = [aiomqtt.MqttError("disconnected")]
    with pytest.raises(TransportError, match="connection lost"):
        await anext(aiter(transport.messages()))
    await transport.close()
    assert [m async for m in transport.messages()] == []


def test_aiomqtt_backlog_notices_are_dropped_and_other_records_kept() -> None:
    drop = aiomqtt_module._DropBacklogNotices()
    backlog = logging.LogRecord(
        "x", logging.WARNING, "f", 1, "There are %d pending publish calls.", (11,), None
    )
    other = logging.LogRecord("x", logging.WARNING, "f", 1, "Caught exception", None, None)
    assert not drop.filter(backlog) and drop.filter(other)


async def test_aiomqtt_asks_for_a_persistent_session_when_given_an_expiry() -> None:
    transport = AiomqttTransport(URL, session_expiry_s=90, clean_start=False)
    connect_props = transport._client._properties
    assert connect_props is not None and getattr(connect_props, "SessionExpiryInterval", None) == 90
