"""The wire module: topics, request decoding in both forms, responses and typed errors, and the rules
for everything a client controls (reply topics, user properties, callIds): ``decode_call`` is total."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    payload = wire.encode_envelope_request(
        "createUser", {"name": "Ann"}, call_id="abc", reply_to="reply/ev/1"
    )
    call = wire.decode_call("service/user-service", payload)
    assert call.envelope and call.function == "createUser" and call.call_id == "abc"
    assert call.reply_to == "reply/ev/1" and call.params == {"name": "Ann"}
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


# --------------------------------------------------------------------------- reply topics (items 6, 7)

BAD_REPLY_TOPICS = [
    "reply/+/x",
    "reply/#",
    "reply/a/+",
    "reply/a/#/b",
    "reply/a+b",  # a wildcard character anywhere makes a topic name invalid
    "service/user-service/getUser",
    "service/user-service/v1/getUser",
    "service/user-service",
    "mesh/routes/user-service",
    "$SYS/broker",
    "reply",
    "reply/",
    "reply//x",
    "reply/x/",
    "Reply/x",
    "",
    "reply/a\x00b",
    "reply/a\nb",
    "reply/a\x7fb",
    "reply/a\x85b",
    "reply/a\ud800b",
    "reply/a\uffffb",
    "reply/a\ufdd0b",
    "reply/" + "x" * wire.MAX_REPLY_TOPIC_BYTES,
    "reply/" + "\u00e9" * 600,  # 600 characters, 1,200 bytes
]


@pytest.mark.parametrize("topic", BAD_REPLY_TOPICS)
def test_a_disallowed_response_topic_is_never_answered(topic: str) -> None:
    with pytest.raises(wire.CallRejected) as info:
        wire.decode_call("service/svc/f", b"{}", response_topic=topic, correlation=b"id-1")
    assert info.value.call.reply_to is None  # nothing is published: the runtime only acknowledges
    assert isinstance(info.value.error, errors.ValidationError)
    assert "refused reply topic" in info.value.error.message


# "" is the same as no replyTo; a lone surrogate cannot be written in JSON (orjson refuses the payload).
@pytest.mark.parametrize("topic", [t for t in BAD_REPLY_TOPICS if t and "\ud800" not in t])
def test_a_disallowed_envelope_reply_to_is_never_answered(topic: str) -> None:
    payload = wire.encode_envelope_request("f", {}, call_id="c-1", reply_to=topic)
    # Even with a valid Response Topic: the envelope's replyTo is the destination, and it is refused.
    with pytest.raises(wire.CallRejected) as info:
        wire.decode_call("service/svc", payload, response_topic="reply/ok")
    assert info.value.call.reply_to is None


@pytest.mark.parametrize("reply_to", [1, ["reply/x"], {"t": "reply/x"}, True])
def test_an_envelope_reply_to_of_another_type_is_never_answered(reply_to: Any) -> None:
    payload = orjson.dumps({"replyTo": reply_to, "body": {"function": "f", "parameters": {}}})
    with pytest.raises(wire.CallRejected) as info:
        wire.decode_call("service/svc", payload, response_topic="reply/ok")
    assert info.value.call.reply_to is None


@pytest.mark.parametrize(
    "topic", ["reply/c1", "reply/user/client-1/calls", "reply/\u00fcn\u00efcode", "reply/a b"]
)
def test_plain_topics_under_reply_are_answered(topic: str) -> None:
    call = wire.decode_call("service/svc/f", b"{}", response_topic=topic)
    assert call.reply_to == topic
    envelope = wire.encode_envelope_request("f", {}, call_id="c", reply_to=topic)
    assert wire.decode_call("service/svc", envelope, response_topic="reply/+/x").reply_to == topic


def test_other_errors_still_reach_an_allowed_reply_topic() -> None:
    with pytest.raises(wire.CallRejected) as info:
        wire.decode_call("service/svc", b'{"replyTo": "reply/r", "body": 1}', response_topic="reply/+")
    assert info.value.call.reply_to == "reply/r" and "envelope" in info.value.error.message
    with pytest.raises(wire.CallRejected) as info:  # not JSON: the Response Topic is all there is
        wire.decode_call("service/svc", b"{nope", response_topic="reply/+")
    assert info.value.call.reply_to is None


# --------------------------------------------------------------------------- user properties (item 8)


@pytest.mark.parametrize(
    "value",
    [
        "1" + "0" * 400,
        "1" * 16,
        "",
        "-5",
        "+5",
        "1e3",
        "1.5",
        " 5",
        "5 ",
        "0x10",
        "\uff11\uff12",
        "\u0665",
        "nan",
    ],
)
def test_a_malformed_deadline_is_a_validation_error(value: str) -> None:
    with pytest.raises(wire.CallRejected) as info:
        wire.decode_call(
            "service/svc/f", b"{}", response_topic="reply/c", user_properties=[("deadline", value)]
        )
    assert isinstance(info.value.error, errors.ValidationError)
    assert "deadline" in info.value.error.message
    assert info.value.call.reply_to == "reply/c"  # the caller is told why
    assert len(info.value.error.message) < 200


def test_deadline_rules() -> None:
    call = wire.decode_call("service/svc/f", b"{}", user_properties=[("deadline", "9" * 15)], now=0.0)
    assert call.deadline == int("9" * 15) / 1000
    both = [("deadline", "5000"), ("deadline", "3000")]
    assert wire.decode_call("service/svc/f", b"{}", user_properties=both, now=0.0).deadline == 3.0
    expiry = wire.decode_call("service/svc/f", b"{}", user_properties=both, expiry_s=1, now=0.0)
    assert expiry.deadline == 1.0  # arrival + Message Expiry is earlier
    assert wire.decode_call("service/svc/f", b"{}", user_properties=[("Deadline", "x")]).deadline is None


@pytest.mark.parametrize("expiry", [0, -1, 2**32, 10**400, True, "10", 1.5])
def test_an_out_of_range_message_expiry_is_ignored(expiry: Any) -> None:
    assert wire.decode_call("service/svc/f", b"{}", expiry_s=expiry).deadline is None


def test_correlation_data_is_bounded() -> None:
    ok = wire.decode_call("service/svc/f", b"{}", correlation=b"\xff" * wire.MAX_CALL_ID_BYTES)
    assert ok.call_id == "ff" * wire.MAX_CALL_ID_BYTES and ok.call_id_given
    long = b"x" * (wire.MAX_CALL_ID_BYTES + 1)
    with pytest.raises(wire.CallRejected) as info:
        wire.decode_call("service/svc/f", b"{}", response_topic="reply/c", correlation=long)
    assert isinstance(info.value.error, errors.ValidationError)
    assert info.value.error.details == {"limit": 256, "size": 257}
    assert info.value.call.correlation == long  # echoed, so the caller can match the refusal
    assert len(info.value.call.call_id) < 64  # logged as a digest
    with pytest.raises(wire.CallRejected):
        wire.decode_call("service/svc/f", b"{}", correlation=b"y" * 65535)


def test_empty_correlation_data_is_no_call_id() -> None:
    call = wire.decode_call("service/svc/f", b"{}", correlation=b"")
    assert not call.call_id_given and call.correlation == b"" and call.call_id


@pytest.mark.parametrize(
    ("call_id", "ok"),
    [("a" * 256, True), ("\u00e9" * 128, True), ("a" * 257, False), ("\u00e9" * 129, False)],
)
def test_envelope_call_id_is_bounded_in_bytes(call_id: str, ok: bool) -> None:
    payload = wire.encode_envelope_request("f", {}, call_id=call_id, reply_to="reply/c")
    if ok:
        assert wire.decode_call("service/svc", payload).call_id == call_id
        return
    with pytest.raises(wire.CallRejected) as info:
        wire.decode_call("service/svc", payload)
    assert isinstance(info.value.error, errors.ValidationError) and info.value.call.reply_to == "reply/c"


@pytest.mark.parametrize(
    "envelope",
    [
        {"callId": 5, "body": {"function": "f"}},
        {"callId": ["x"], "body": {"function": "f"}},
        {"messageId": {}, "body": {"function": "f"}},
        {"messageId": "m" * 257, "body": {"function": "f"}},
        {"headers": "authorization", "body": {"function": "f"}},
        {"headers": {}, "body": {"function": 7}},
    ],
)
def test_envelope_fields_of_the_wrong_type_are_validation_errors(envelope: dict[str, Any]) -> None:
    with pytest.raises(wire.CallRejected) as info:
        wire.decode_call("service/svc", orjson.dumps({"replyTo": "reply/c", **envelope}))
    assert isinstance(info.value.error, errors.ValidationError) and info.value.call.reply_to == "reply/c"


def test_properties_that_are_not_utf8_are_ignored() -> None:
    # A broker that does not check UTF-8 passes such bytes on; the codec keeps them as lone surrogates.
    props = [("x-bad", "\udcff"), ("\udcfe", "v"), ("deadline", "\udcff"), ("x-good", "v")]
    call = wire.decode_call("service/svc/f", b"{}", user_properties=props)
    assert call.headers == {"x-good": "v"} and call.deadline is None


def test_trace_context_rules() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    props = [("traceparent", parent), ("tracestate", "k=v"), ("authorization", "Bearer t")]
    call = wire.decode_call("service/svc/f", b"{}", user_properties=props)
    assert call.headers == {"traceparent": parent, "tracestate": "k=v", "authorization": "Bearer t"}
    for bad in ["junk", parent.upper(), "00-" + "0" * 32 + "-00f067aa0ba902b7-01", "ff" + parent[2:]]:
        call = wire.decode_call(
            "service/svc/f", b"{}", user_properties=[("traceparent", bad), ("tracestate", "k=v")]
        )
        assert "traceparent" not in call.headers and "tracestate" not in call.headers
    long_state = [("traceparent", parent), ("tracestate", "k=" + "v" * 600)]
    call = wire.decode_call("service/svc/f", b"{}", user_properties=long_state)
    assert "tracestate" not in call.headers and call.headers["traceparent"] == parent


# --------------------------------------------------------------------------- totality

mqtt_text = st.text(max_size=30)
topics = st.sampled_from(["service/svc/f", "service/svc", "service/svc/v1/f", "reply/x"]) | mqtt_text
reply_topics = st.none() | st.sampled_from(["reply/ok", "reply/+/x", "service/svc/f"]) | mqtt_text
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "messageId": json_values,
        "callId": json_values | st.text(min_size=250, max_size=300),
        "replyTo": json_values | reply_topics,
        "headers": json_values,
        "body": json_values
        | st.fixed_dictionaries(
            {"function": json_values | st.just("f")}, optional={"parameters": json_values}
        ),
    },
)
payload_values = st.one_of(
    st.binary(max_size=100),
    json_values.map(lambda v: orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS) if _dumpable(v) else b"null"),
    envelope_like.map(lambda v: orjson.dumps(v) if _dumpable(v) else b"{}"),
    st.sampled_from([b"1" + b"0" * 400, b'{"a": 1' + b"0" * 400 + b"}", b"[" * 2000, b'"\\ud800"']),
)
property_values = (
    st.text(max_size=20)
    | st.sampled_from(["1" + "0" * 400, "\udcff", "9" * 15, "9" * 16, "-1", "\uff11"])
    | st.integers(-(10**30), 10**30).map(str)
)
property_names = st.sampled_from(["deadline", "authorization", "traceparent", "tracestate", "x"]) | mqtt_text


def _dumpable(value: Any) -> bool:
    try:
        orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        return False
    return True


@settings(max_examples=600, deadline=None)
@given(
    topic=topics,
    payload=payload_values,
    response_topic=reply_topics,
    correlation=st.none() | st.binary(max_size=300),
    props=st.lists(st.tuples(property_names, property_values), max_size=5),
    expiry=st.none() | st.integers(-(2**40), 2**40),
)
def test_decode_call_is_total(
    topic: str,
    payload: bytes,
    response_topic: str | None,
    correlation: bytes | None,
    props: list[tuple[str, str]],
    expiry: int | None,
) -> None:
    try:
        call = wire.decode_call(
            topic,
            payload,
            response_topic=response_topic,
            correlation=correlation,
            user_properties=props,
            expiry_s=expiry,
        )
    except wire.CallRejected as rejected:
        call = rejected.call
        assert isinstance(rejected.error, errors.DormantError)
        assert not rejected.error.message.startswith("malformed request")  # no rule was missed
    else:
        assert isinstance(call.params, dict)
        assert call.correlation is None or len(call.correlation) <= wire.MAX_CALL_ID_BYTES
    if call.reply_to is not None:  # whatever happened, an answer only ever goes somewhere allowed
        assert wire.reply_topic_problem(call.reply_to) is None
    assert len(call.call_id.encode()) <= 2 * wire.MAX_CALL_ID_BYTES
    if call.deadline is not None:
        assert call.deadline < 10**13
    body, _ = wire.encode_error(call, errors.ValidationError("x"))  # an answer can always be encoded
    assert orjson.loads(body)


def test_mesh_topics_are_built_and_parsed_by_wire_alone() -> None:
    """Every mesh topic has a builder and a parser here; the controller, clients and CLI use them."""
    assert wire.parse_routes_topic(wire.routes_topic("svc")) == "svc"
    assert wire.parse_routes_topic("mesh/routes/a/b") is None
    assert wire.parse_routes_topic("mesh/stats/a") is None
    source = wire.parse_stats_topic(wire.stats_topic("svc", 12, "pod-1"))
    assert source == wire.StatsSource("svc", 12, "pod-1")
    for bad in ("mesh/stats/svc/12/pod", "mesh/stats/svc/v1", "mesh/stats//v1/p", "mesh/routes/svc/v1/p"):
        assert wire.parse_stats_topic(bad) is None
    assert wire.stats_filter() == "mesh/stats/+/+/+"
    assert wire.stats_filter("svc") == "mesh/stats/svc/+/+"
    assert wire.parse_service_state_topic(wire.service_state_topic("svc")) == "svc"
    assert wire.parse_service_state_topic(wire.service_state_topic()) is None
    assert wire.service_state_filter() == "mesh/services/+"
    mappings = wire.topic_mappings("svc")
    assert mappings == {
        "live": "service/svc/{function}",
        "version": "service/svc/v{version}/{function}",
        "envelope": "service/svc",
    }
    assert wire.parse_topic(mappings["version"].format(version=3, function="f")) == wire.Target("svc", "f", 3)
