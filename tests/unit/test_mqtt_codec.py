"""The MQTT 5 codec: round trips of every packet Dormant sends, framing of split and joined packets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dormant.mqtt import codec


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
    message = codec.Publish(
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
    a = codec.encode_publish(codec.Publish("t/a", b"x" * 200, 1, packet_id=1))
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
    data = codec.encode_publish(codec.Publish("t", b"x" * 1000))
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
