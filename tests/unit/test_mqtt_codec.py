"""The MQTT 5 codec: round trips of every packet Dormant sends, framing of split and joined packets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dormant.mqtt import InvalidPublish, MqttConnection, codec
from dormant.transport import AiomqttTransport, Message, TransportError


@given(st.integers(min_value=0, max_value=268_435_455))
def test_varint_round_trip(value: int) -> None:
    encoded = codec.encode_varint(value)
    assert len(encoded) <= 4
    assert codec.decode_varint(encoded, 0) == (value, len(encoded))


def test_varint_too_long_is_malformed() -> None:
    with pytest.raises(codec.MalformedPacket):
        codec.decode_varint(b"\xff\xff\xff\xff\x01", 0)


def _only_packet(data: bytes) -> tuple[int, memoryview]:
    packets, used = codec.split_packets(data, 1 << 24)
    assert used == len(data) and len(packets) == 1
    return packets[0]


@given(
    topic=st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
    payload=st.binary(max_size=300),
    qos=st.sampled_from([0, 1]),
    correlation=st.none() | st.binary(min_size=1, max_size=32),
    props=st.lists(st.tuples(st.text(max_size=10), st.text(max_size=10)), max_size=3),
    expiry=st.none() | st.integers(min_value=0, max_value=2**32 - 1),
)
def test_publish_round_trip(
    topic: str,
    payload: bytes,
    qos: int,
    correlation: bytes | None,
    props: list[tuple[str, str]],
    expiry: int | None,
) -> None:
    message = codec.Message(
        topic,
        payload,
        qos,
        retain=True,
        packet_id=7 if qos else None,
        response_topic="reply/x",
        correlation=correlation,
        user_properties=props,
        expiry_s=expiry,
        content_type="application/json",
    )
    first, body = _only_packet(codec.encode_publish(message))
    assert first >> 4 == codec.PacketType.PUBLISH
    decoded = codec.decode_publish(first & 0x0F, body)
    assert decoded == message


def test_packets_split_across_reads_and_joined_in_one() -> None:
    a = codec.encode_publish(codec.Message("t/a", b"x" * 200, 1, packet_id=1))
    b = codec.encode_puback(1, 0x10)
    data = a + b
    packets, used = codec.split_packets(data[:150], 1 << 20)
    assert packets == [] and used == 0
    packets, used = codec.split_packets(data, 1 << 20)
    assert used == len(data) and [p[0] >> 4 for p in packets] == [
        codec.PacketType.PUBLISH,
        codec.PacketType.PUBACK,
    ]
    assert codec.decode_ack(packets[1][1]) == (1, 0x10, {})


def test_oversized_packet_is_refused() -> None:
    data = codec.encode_publish(codec.Message("t", b"x" * 1000))
    with pytest.raises(codec.MalformedPacket):
        codec.split_packets(data, 100)


def test_connect_carries_session_settings() -> None:
    data = codec.encode_connect(
        "cid",
        keepalive=30,
        clean_start=False,
        session_expiry_s=600,
        receive_maximum=100,
        username="u",
        password="p",
    )
    first, body = _only_packet(data)
    assert first == codec.PacketType.CONNECT << 4
    assert bytes(body[:7]) == b"\x00\x04MQTT\x05"
    flags = body[7]
    assert flags & 0x02 == 0 and flags & 0xC0 == 0xC0  # no clean start; username and password
    props, _ = codec.decode_properties(body, 10)
    assert props == {codec.RECEIVE_MAXIMUM: 100, codec.SESSION_EXPIRY: 600}


def test_suback_and_unknown_property() -> None:
    body = memoryview(b"\x00\x05\x00\x01\x87")
    assert codec.decode_suback(body) == (5, [1, 0x87])
    with pytest.raises(codec.MalformedPacket):
        codec.decode_properties(memoryview(b"\x02\x7f\x00"), 0)


# --------------------------------------------------------------------------- refusing what a broker would


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "reply/+/x",
        "reply/#",
        "a+b",
        "t\x00u",
        "t\nu",
        "t\x7fu",
        "t\x9fu",
        "t\ud800u",
        "t\ufffeu",
        "t\U0001ffffu",
        "t\ufdd0u",
        "x" * 65536,
        "\u00e9" * 40000,  # 80,000 bytes of UTF-8
    ],
)
def test_invalid_topic_names(topic: str) -> None:
    assert codec.topic_name_problem(topic) is not None


@pytest.mark.parametrize("topic", ["t", "reply/x/y", "/", "a//b", "\u00fcber/\U0001f600", "x" * 65535])
def test_valid_topic_names(topic: str) -> None:
    assert codec.topic_name_problem(topic) is None


class _Recorder:
    """A stand-in socket transport that records what would be sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def get_extra_info(self, name: str) -> None:
        return None

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("topic", "props", "response_topic"),
    [
        ("reply/+/x", [], None),
        ("reply/#", [], None),
        ("", [], None),
        ("reply/a\x00b", [], None),
        ("x" * 65536, [], None),
        ("reply/ok", [("status", "o\x00k")], None),
        ("reply/ok", [("st\ud800", "ok")], None),
        ("reply/ok", [], "reply/+"),
    ],
)
async def test_the_client_refuses_an_invalid_publish_without_sending_it(
    topic: str, props: list[tuple[str, str]], response_topic: str | None
) -> None:
    conn = MqttConnection(manual_ack=True, on_message=None, max_packet_size=1 << 20)
    recorder = _Recorder()
    conn.connection_made(recorder)  # type: ignore[arg-type]
    for qos in (0, 1):
        with pytest.raises(InvalidPublish) as info:
            await conn.publish(
                Message(topic, b"{}", qos=qos, user_properties=props, response_topic=response_topic)
            )
        assert info.value.reason in (codec.ReasonCode.TOPIC_NAME_INVALID, codec.ReasonCode.MALFORMED_PACKET)
    assert recorder.sent == [] and conn.is_open  # nothing went out; the connection is untouched
    await conn.publish(Message("reply/ok", b"{}", qos=0))
    assert len(recorder.sent) == 1


def test_strings_that_are_not_utf8_in_a_received_publish_do_not_fail_the_packet() -> None:
    # A broker that does not check UTF-8 may pass these on; failing the packet would drop the connection
    # and get the same message redelivered, forever.
    good = codec.encode_publish(
        codec.Message(
            "service/s/f", b"{}", 1, packet_id=3, response_topic="reply/A", user_properties=[("k", "V")]
        )
    )
    bad = good.replace(b"reply/A", b"reply/\xff").replace(b"\x00\x01V", b"\x00\x01\xfe")
    first, body = _only_packet(bad)
    message = codec.decode_publish(first & 0x0F, body)
    assert message.response_topic == "reply/\udcff" and message.user_properties == [("k", "\udcfe")]
    assert message.packet_id == 3 and message.payload == b"{}"


@pytest.mark.parametrize("topic", ["reply/+/x", "reply/#", "", "a\x00b"])
async def test_the_aiomqtt_transport_refuses_invalid_topics_too(topic: str) -> None:
    transport = AiomqttTransport("mqtt://127.0.0.1:1")  # never connected: nothing may be sent
    with pytest.raises(TransportError, match="refused before sending") as info:
        await transport.publish(Message(topic, b"{}"))
    assert info.value.reason == codec.ReasonCode.TOPIC_NAME_INVALID
