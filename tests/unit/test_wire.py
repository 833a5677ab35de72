"""The wire module: topics, request decoding in both forms, responses and typed errors."""

from __future__ import annotations

import orjson
import pytest

from dormant import errors, wire


def test_topics_follow_the_design() -> None:
    assert wire.function_topic("user-service", "createUser") == "service/user-service/createUser"
    assert wire.version_topic("user-service", 3, "getUser") == "service/user-service/v3/getUser"
    assert wire.envelope_topic("user-service") == "service/user-service"
    assert wire.reply_filter("c1") == "reply/c1/#"
    assert wire.serving_filters("svc", 2, live=True) == [
        "$share/svc-v2/service/svc/v2/+",
        "$share/svc/service/svc/+",
        "$share/svc/service/svc",
    ]
    assert wire.serving_filters("svc", 2, live=False) == ["$share/svc-v2/service/svc/v2/+"]


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("service/a", wire.Target("a", None)),
        ("service/a/fn", wire.Target("a", "fn")),
        ("service/a/v12/fn", wire.Target("a", "fn", 12)),
        ("service/a/x/fn", None),
        ("reply/a", None),
        ("service/", None),
        ("service/a/v1/fn/extra", None),
    ],
)
def test_parse_topic(topic: str, expected: wire.Target | None) -> None:
    assert wire.parse_topic(topic) == expected


def test_native_call_reads_properties() -> None:
    call = wire.decode_call(
        "service/svc/v2/doIt",
        b'{"a": 1}',
        response_topic="reply/c1",
        correlation=b"\x00\x01\xff" * 6,
        user_properties=[("deadline", "2000"), ("authorization", "Bearer x")],
        expiry_s=10,
        now=1.0,
    )
    assert (call.service, call.function, call.version) == ("svc", "doIt", 2)
    assert call.params == {"a": 1}
    assert call.call_id == (b"\x00\x01\xff" * 6).hex()
    assert call.deadline == 2.0  # the user property is earlier than now + expiry
    assert call.headers == {"authorization": "Bearer x"}
    assert not call.envelope


def test_printable_correlation_is_the_call_id() -> None:
    call = wire.decode_call("service/svc/f", b"{}", correlation=b"call-42")
    assert call.call_id == "call-42"


def test_envelope_call() -> None:
    payload = wire.encode_envelope_request("createUser", {"name": "Ann"}, call_id="abc", reply_to="event/1")
    call = wire.decode_call("service/user-service", payload)
    assert call.envelope and call.function == "createUser" and call.call_id == "abc"
    assert call.reply_to == "event/1" and call.params == {"name": "Ann"}
    body, props = wire.encode_response(call, True, {"userId": "u1"})
    decoded = orjson.loads(body)
    assert decoded["callId"] == "abc" and decoded["body"] == {"userId": "u1"}
    assert decoded["headers"]["status"] == "ok" and props == (("status", "ok"),)


@pytest.mark.parametrize(
    ("topic", "payload", "error_type", "fragment"),
    [
        ("service/svc/f", b"{not json", errors.ValidationError, "not valid JSON"),
        ("service/svc/f", b"[1, 2]", errors.ValidationError, "must be a JSON object"),
        ("service/svc/f", b'"text"', errors.ValidationError, "got a string"),
        ("service/svc/f", b"x" * (wire.MAX_PAYLOAD_BYTES + 1), errors.ValidationError, "byte limit"),
        ("service/svc", b'{"body": {}}', errors.ValidationError, "envelope"),
        ("elsewhere/svc", b"{}", errors.NotFound, "not a service topic"),
    ],
)
def test_bad_requests_are_rejected_with_typed_errors(
    topic: str, payload: bytes, error_type: type[errors.DormantError], fragment: str
) -> None:
    with pytest.raises(wire.CallRejected) as info:
        wire.decode_call(topic, payload, response_topic="reply/c", correlation=b"id-1")
    assert isinstance(info.value.error, error_type)
    assert fragment in info.value.error.message
    # What is known is kept, so the caller still gets an answer (in envelope shape on the envelope topic).
    assert info.value.call.reply_to == "reply/c" and info.value.call.correlation == b"id-1"
    assert info.value.call.envelope == (topic == "service/svc")


def test_responses_round_trip_and_errors_come_back_typed() -> None:
    call = wire.Call(service="s", function="f", version=None, call_id="c", params={})
    body, props = wire.encode_response(call, True, {"x": 1})
    assert wire.decode_response(body, props) == {"x": 1}
    body, props = wire.encode_error(call, errors.BusinessLogicError("nope", {"k": 1}))
    with pytest.raises(errors.BusinessLogicError) as info:
        wire.decode_response(body, props)
    assert info.value.details == {"k": 1}


def test_unknown_error_type_becomes_system_error() -> None:
    err = errors.error_from_payload({"type": "Weird", "message": "m"})
    assert isinstance(err, errors.SystemError) and err.message == "m"
    assert isinstance(errors.error_from_payload("junk"), errors.SystemError)


def test_timeout_error_is_also_the_builtin() -> None:
    assert isinstance(errors.TimeoutError("t"), TimeoutError)


def test_reply_expiry_stays_in_the_mqtt_range() -> None:
    assert wire.reply_expiry(None) is None
    assert wire.reply_expiry(100.0, now=200.0) == 1  # already late: still deliverable
    assert wire.reply_expiry(110.2, now=100.0) == 11
    assert wire.reply_expiry(2.0**45, now=0.0) == wire.MAX_EXPIRY_S
