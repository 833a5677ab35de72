"""MQTT 5 packet encoding and decoding (the subset Dormant speaks: QoS 0/1, no QoS 2, no AUTH).

``mqtt_string_problem`` and ``topic_name_problem`` say why a string may not be sent: a broker answers
a packet with a bad string or topic name by closing the connection, so the client checks first.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ReasonCode(IntEnum):
    SUCCESS = 0x00
    GRANTED_QOS_1 = 0x01
    NO_MATCHING_SUBSCRIBERS = 0x10
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    BAD_AUTHENTICATION_METHOD = 0x8C
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_ID_IN_USE = 0x91
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    PACKET_TOO_LARGE = 0x95
    QUOTA_EXCEEDED = 0x97
    PAYLOAD_FORMAT_INVALID = 0x99
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E


# Property identifiers and their value kinds.
_BYTE, _U16, _U32, _VARINT, _STR, _BIN, _PAIR = range(7)
PROPERTY_KINDS: dict[int, int] = {
    0x01: _BYTE,
    0x02: _U32,
    0x03: _STR,
    0x08: _STR,
    0x09: _BIN,
    0x0B: _VARINT,
    0x11: _U32,
    0x12: _STR,
    0x13: _U16,
    0x15: _STR,
    0x16: _BIN,
    0x17: _BYTE,
    0x18: _U32,
    0x19: _BYTE,
    0x1A: _STR,
    0x1C: _STR,
    0x1F: _STR,
    0x21: _U16,
    0x22: _U16,
    0x23: _U16,
    0x24: _BYTE,
    0x25: _BYTE,
    0x26: _PAIR,
    0x27: _U32,
    0x28: _BYTE,
    0x29: _BYTE,
    0x2A: _BYTE,
}
MESSAGE_EXPIRY = 0x02
CONTENT_TYPE = 0x03
RESPONSE_TOPIC = 0x08
CORRELATION_DATA = 0x09
SESSION_EXPIRY = 0x11
ASSIGNED_CLIENT_ID = 0x12
SERVER_KEEP_ALIVE = 0x13
REASON_STRING = 0x1F
RECEIVE_MAXIMUM = 0x21
USER_PROPERTY = 0x26
MAXIMUM_PACKET_SIZE = 0x27


class MalformedPacket(ValueError):
    """Bytes from the broker that are not a valid MQTT 5 packet."""


MAX_STRING_BYTES = 65535
"""An MQTT string (topic names included) is at most this many bytes of UTF-8."""


def _forbidden_code_point(code: int) -> bool:
    """Code points an MQTT string must not hold, as brokers enforce it (Mosquitto closes the connection):
    U+0000, the C0 and C1 controls and DEL, surrogates, and the Unicode non-characters."""
    return (
        code <= 0x1F
        or 0x7F <= code <= 0x9F
        or 0xD800 <= code <= 0xDFFF
        or 0xFDD0 <= code <= 0xFDEF
        or (code & 0xFFFE) == 0xFFFE
    )


def mqtt_string_problem(value: str) -> str | None:
    """Why ``value`` cannot be sent as an MQTT UTF-8 string, or None when it can."""
    if len(value) > MAX_STRING_BYTES:  # a character is at least one byte
        return f"longer than {MAX_STRING_BYTES} bytes"
    for char in value:
        if _forbidden_code_point(ord(char)):
            return f"holds the forbidden character U+{ord(char):04X}"
    if len(value.encode()) > MAX_STRING_BYTES:
        return f"longer than {MAX_STRING_BYTES} bytes of UTF-8"
    return None


def topic_name_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid topic name to publish to (MQTT 5 section 4.7), or None."""
    if not topic:
        return "empty"
    if "+" in topic or "#" in topic:
        return "holds a wildcard (+ or #)"
    return mqtt_string_problem(topic)


# --------------------------------------------------------------------------- primitives


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(value, next position); raises IndexError when the data ends inside the integer."""
    value = shift = 0
    for _ in range(4):
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def _str(value: str) -> bytes:
    raw = value.encode()
    return struct.pack("!H", len(raw)) + raw


def _bin(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def _read_bin(data: memoryview, pos: int) -> tuple[bytes, int]:
    (size,) = struct.unpack_from("!H", data, pos)
    end = pos + 2 + size
    if end > len(data):
        raise MalformedPacket("string runs past the packet")
    return bytes(data[pos + 2 : end]), end


def _read_str(data: memoryview, pos: int, *, lenient: bool = False) -> tuple[str, int]:
    """An MQTT string; ``lenient`` keeps bytes that are not UTF-8 as lone surrogates (``surrogateescape``)
    instead of failing the packet, for strings a client wrote that the broker may pass on unchecked."""
    raw, pos = _read_bin(data, pos)
    try:
        return raw.decode(), pos
    except UnicodeDecodeError:
        if lenient:
            return raw.decode(errors="surrogateescape"), pos
        raise MalformedPacket("invalid UTF-8 string") from None


def encode_properties(props: dict[int, Any] | None) -> bytes:
    if not props:
        return b"\x00"
    out = bytearray()
    for key, value in props.items():
        kind = PROPERTY_KINDS[key]
        if kind == _PAIR:
            for name, val in value:
                out += bytes((key,)) + _str(name) + _str(val)
            continue
        out.append(key)
        if kind == _BYTE:
            out.append(value)
        elif kind == _U16:
            out += struct.pack("!H", value)
        elif kind == _U32:
            out += struct.pack("!I", value)
        elif kind == _VARINT:
            out += encode_varint(value)
        elif kind == _STR:
            out += _str(value)
        else:
            out += _bin(value)
    return encode_varint(len(out)) + bytes(out)


def decode_properties(data: memoryview, pos: int, *, lenient: bool = False) -> tuple[dict[int, Any], int]:
    length, pos = decode_varint(data, pos)
    end = pos + length
    if end > len(data):
        raise MalformedPacket("properties run past the packet")
    props: dict[int, Any] = {}
    while pos < end:
        key = data[pos]
        pos += 1
        kind = PROPERTY_KINDS.get(key)
        if kind is None:
            raise MalformedPacket(f"unknown property 0x{key:02x}")
        value: Any
        if kind == _BYTE:
            value = data[pos]
            pos += 1
        elif kind == _U16:
            (value,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif kind == _U32:
            (value,) = struct.unpack_from("!I", data, pos)
            pos += 4
        elif kind == _VARINT:
            value, pos = decode_varint(data, pos)
        elif kind == _STR:
            value, pos = _read_str(data, pos, lenient=lenient)
        elif kind == _BIN:
            value, pos = _read_bin(data, pos)
        else:
            name, pos = _read_str(data, pos, lenient=lenient)
            val, pos = _read_str(data, pos, lenient=lenient)
            props.setdefault(key, []).append((name, val))
            continue
        props[key] = value
    return props, end


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + encode_varint(len(body)) + body


# --------------------------------------------------------------------------- packets


def no_ack() -> None:
    """Acknowledging is a no-op: QoS 0, or a client that acknowledged on receipt."""


@dataclass(slots=True)
class Message:
    """An MQTT PUBLISH, either way: the one message type of Dormant's MQTT code (this codec, the
    connection, both transports and everything above them).

    ``packet_id`` is the codec's (set on receipt; chosen by the connection when sending). ``ack`` sends
    the PUBACK of a received QoS 1 message when the transport acknowledges on demand (``manual_ack``);
    it is a no-op otherwise and is ignored when sending.
    """

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    response_topic: str | None = None
    correlation: bytes | None = None
    user_properties: Sequence[tuple[str, str]] = ()
    expiry_s: int | None = None
    content_type: str | None = None
    dup: bool = False
    packet_id: int | None = None
    ack: Callable[[], None] = no_ack


def encode_connect(
    client_id: str,
    *,
    keepalive: int,
    clean_start: bool,
    session_expiry_s: int,
    receive_maximum: int,
    username: str | None = None,
    password: str | None = None,
    maximum_packet_size: int | None = None,
) -> bytes:
    flags = 0x02 if clean_start else 0
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    props: dict[int, Any] = {RECEIVE_MAXIMUM: receive_maximum}
    if session_expiry_s:
        props[SESSION_EXPIRY] = session_expiry_s
    if maximum_packet_size:
        props[MAXIMUM_PACKET_SIZE] = maximum_packet_size
    body = _str("MQTT") + bytes((5, flags)) + struct.pack("!H", keepalive) + encode_properties(props)
    body += _str(client_id)
    if username is not None:
        body += _str(username)
    if password is not None:
        body += _bin(password.encode())
    return _packet(PacketType.CONNECT << 4, body)


def encode_publish(message: Message, packet_id: int | None = None) -> bytes:
    """The PUBLISH packet of ``message``; ``packet_id`` (QoS 1) overrides the message's own."""
    first = (PacketType.PUBLISH << 4) | (message.qos << 1) | (0x01 if message.retain else 0)
    if message.dup:
        first |= 0x08
    props: dict[int, Any] = {}
    if message.expiry_s is not None:
        props[MESSAGE_EXPIRY] = message.expiry_s
    if message.content_type is not None:
        props[CONTENT_TYPE] = message.content_type
    if message.response_topic is not None:
        props[RESPONSE_TOPIC] = message.response_topic
    if message.correlation is not None:
        props[CORRELATION_DATA] = message.correlation
    if message.user_properties:
        props[USER_PROPERTY] = list(message.user_properties)
    head = _str(message.topic)
    if message.qos:
        head += struct.pack("!H", packet_id or message.packet_id or 0)
    return _packet(first, head + encode_properties(props) + message.payload)


def decode_publish(flags: int, body: memoryview) -> Message:
    """A received PUBLISH. Its topic and string properties come from another client: a broker that does
    not check UTF-8 may pass on invalid bytes, which are kept as lone surrogates (for ``dormant.wire``
    to refuse) rather than failing the packet, since closing the connection would only get the same
    message redelivered."""
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    topic, pos = _read_str(body, 0, lenient=True)
    packet_id = None
    if qos:
        (packet_id,) = struct.unpack_from("!H", body, pos)
        pos += 2
    props, pos = decode_properties(body, pos, lenient=True)
    return Message(
        topic=topic,
        payload=bytes(body[pos:]),
        qos=qos,
        retain=bool(flags & 0x01),
        dup=bool(flags & 0x08),
        packet_id=packet_id,
        response_topic=props.get(RESPONSE_TOPIC),
        correlation=props.get(CORRELATION_DATA),
        user_properties=props.get(USER_PROPERTY, []),
        expiry_s=props.get(MESSAGE_EXPIRY),
        content_type=props.get(CONTENT_TYPE),
    )


def encode_puback(packet_id: int, reason: int = 0) -> bytes:
    if reason == 0:
        return bytes((PacketType.PUBACK << 4, 2)) + struct.pack("!H", packet_id)
    return bytes((PacketType.PUBACK << 4, 3)) + struct.pack("!HB", packet_id, reason)


def decode_ack(body: memoryview) -> tuple[int, int, dict[int, Any]]:
    """PUBACK (and PUBREC/PUBCOMP) body: (packet id, reason code, properties)."""
    (packet_id,) = struct.unpack_from("!H", body, 0)
    if len(body) == 2:
        return packet_id, 0, {}
    reason = body[2]
    props: dict[int, Any] = {}
    if len(body) > 3:
        props, _ = decode_properties(body, 3)
    return packet_id, reason, props


def encode_subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    body = struct.pack("!H", packet_id) + b"\x00"
    for topic_filter, qos in filters:
        body += _str(topic_filter) + bytes((qos,))
    return _packet((PacketType.SUBSCRIBE << 4) | 0x02, body)


def encode_unsubscribe(packet_id: int, filters: list[str]) -> bytes:
    body = struct.pack("!H", packet_id) + b"\x00"
    for topic_filter in filters:
        body += _str(topic_filter)
    return _packet((PacketType.UNSUBSCRIBE << 4) | 0x02, body)


def decode_suback(body: memoryview) -> tuple[int, list[int]]:
    """SUBACK / UNSUBACK body: (packet id, reason codes)."""
    (packet_id,) = struct.unpack_from("!H", body, 0)
    _, pos = decode_properties(body, 2)
    return packet_id, list(body[pos:])


def decode_connack(body: memoryview) -> tuple[bool, int, dict[int, Any]]:
    """(session present, reason code, properties)."""
    if len(body) < 2:
        raise MalformedPacket("short CONNACK")
    props, _ = decode_properties(body, 2) if len(body) > 2 else ({}, 2)
    return bool(body[0] & 0x01), body[1], props


def decode_disconnect(body: memoryview) -> tuple[int, dict[int, Any]]:
    if not body:
        return 0, {}
    props, _ = decode_properties(body, 1) if len(body) > 1 else ({}, 1)
    return body[0], props


PINGREQ = bytes((PacketType.PINGREQ << 4, 0))
DISCONNECT = bytes((PacketType.DISCONNECT << 4, 0))


def encode_disconnect(*, session_expiry_s: int | None = None) -> bytes:
    """A normal DISCONNECT; ``session_expiry_s`` replaces the session's expiry (0 ends it now)."""
    if session_expiry_s is None:
        return DISCONNECT
    return _packet(
        PacketType.DISCONNECT << 4, b"\x00" + encode_properties({SESSION_EXPIRY: session_expiry_s})
    )


def split_packets(data: bytes, max_size: int) -> tuple[list[tuple[int, memoryview]], int]:
    """Complete packets at the start of ``data`` as (first byte, body) and the bytes they use.

    ``data`` is immutable, so the bodies can be views into it.
    """
    packets: list[tuple[int, memoryview]] = []
    view = memoryview(data)
    pos = 0
    size = len(data)
    while pos + 2 <= size:
        try:
            length, body_start = decode_varint(view, pos + 1)
        except IndexError:
            break
        if length > max_size:
            raise MalformedPacket(f"packet of {length} bytes is over the {max_size} byte limit")
        end = body_start + length
        if end > size:
            break
        packets.append((data[pos], view[body_start:end]))
        pos = end
    return packets, pos
