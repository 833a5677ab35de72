"""Conformance: the two wire forms, topics, input validation and typed errors (docs/wire-protocol.md).

Every case is one request with exactly the properties it names and one expected answer: the ``type``,
the ``status`` user property, the correlation data echoed, and the details. The Python runtime is the
reference for details that the wire protocol leaves to the implementation (``details.errors`` paths and
their order).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from .harness import (
    SERVICE,
    Caller,
    RuntimeKind,
    call_id_text,
    expect_error,
    expect_error_body,
    expect_ok,
    new_call_id,
)

pytestmark = pytest.mark.usefixtures("runtime")

FUNCTIONS = ["badOutput", "echo", "fail", "sleep", "tally"]
MAX_PAYLOAD = 6 * 1024 * 1024


# --------------------------------------------------------------------------- native form


def test_native_call_answers_with_the_result(caller: Caller, runtime_kind: RuntimeKind) -> None:
    correlation = b"conformance-native-0001"
    answer = caller.call(
        "echo",
        {"text": "hello", "count": 3, "tags": ["a", "b"]},
        correlation=correlation,
        user_properties=[("x-probe", "probe-1")],
    )
    assert expect_ok(answer, correlation) == {
        "text": "hello",
        "count": 3,
        "tags": ["a", "b"],
        "callId": "conformance-native-0001",
        "probe": "probe-1",
        "runtime": runtime_kind.name,
    }


def test_binary_call_id_is_shown_as_hex_and_unset_fields_are_left_out(
    caller: Caller, runtime_kind: RuntimeKind
) -> None:
    correlation = b"\x00\x01\xfe\xff" + new_call_id()
    answer = caller.call("echo", {"text": "bytes"}, correlation=correlation)
    assert expect_ok(answer, correlation) == {
        "text": "bytes",
        "callId": correlation.hex(),
        "probe": None,
        "runtime": runtime_kind.name,
    }
    assert call_id_text(correlation) == correlation.hex()


def test_user_property_names_match_exactly_and_the_last_repeat_wins(caller: Caller) -> None:
    correlation = new_call_id()
    answer = caller.call(
        "echo", {"text": "x"}, correlation=correlation, user_properties=[("X-Probe", "upper")]
    )
    assert expect_ok(answer, correlation)["probe"] is None
    answer = caller.call(
        "echo",
        {"text": "x"},
        correlation=correlation + b"-2",
        user_properties=[("x-probe", "first"), ("x-probe", "second")],
    )
    assert expect_ok(answer, correlation + b"-2")["probe"] == "second"


def test_version_topic_is_served(caller: Caller, runtime_kind: RuntimeKind) -> None:
    correlation = new_call_id()
    answer = caller.call(f"service/{SERVICE}/v1/echo", {"text": "v1"}, correlation=correlation)
    assert expect_ok(answer, correlation)["runtime"] == runtime_kind.name


@pytest.mark.parametrize("topic", [f"service/{SERVICE}/nosuch", f"service/{SERVICE}/v1/nosuch"])
def test_unknown_function_is_not_found_with_the_function_list(caller: Caller, topic: str) -> None:
    correlation = new_call_id()
    answer = caller.call(topic, {"text": "x"}, correlation=correlation)
    expect_error(answer, "NotFound", correlation, details={"functions": FUNCTIONS})


def test_no_correlation_data_still_answers_without_one(caller: Caller) -> None:
    reply = caller.new_reply_topic()
    caller.publish(f"service/{SERVICE}/echo", {"text": "anon"}, response_topic=reply)
    body = expect_ok(caller.wait_for(reply), None)
    assert body["text"] == "anon"
    assert isinstance(body["callId"], str) and body["callId"]


# --------------------------------------------------------------------------- envelope form


def _envelope(reply: str | None, **fields: Any) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "messageId": f"msg-{uuid.uuid4().hex[:8]}",
        "callId": f"env-{uuid.uuid4().hex}",
        "headers": {"content-type": "application/json"},
        "body": {"function": "echo", "parameters": {"text": "env"}},
    }
    if reply is not None:
        envelope["replyTo"] = reply
    envelope.update(fields)
    return envelope


def _expect_envelope_answer(raw: Any, request: dict[str, Any], status: str) -> Any:
    assert raw.statuses == [status], raw.user_properties
    answer = raw.json()
    assert set(answer) == {"messageId", "callId", "inReplyTo", "headers", "body"}, answer
    assert isinstance(answer["messageId"], str) and answer["messageId"]
    assert answer["callId"] == request["callId"]
    assert answer["inReplyTo"] == request["messageId"]
    assert answer["headers"] == {"content-type": "application/json", "status": status}
    return answer["body"]


def test_envelope_call_answers_in_the_envelope_shape(caller: Caller, runtime_kind: RuntimeKind) -> None:
    reply = caller.new_reply_topic()
    request = _envelope(reply, headers={"X-Probe": "env-probe", "x-number": 5})
    caller.publish(f"service/{SERVICE}", request)
    body = _expect_envelope_answer(caller.wait_for(reply), request, "ok")
    assert body == {
        "text": "env",
        "callId": request["callId"],
        "probe": "env-probe",
        "runtime": runtime_kind.name,
    }


def test_envelope_without_reply_to_answers_to_the_response_topic(caller: Caller) -> None:
    reply = caller.new_reply_topic()
    request = _envelope(None, body={"function": "nosuch", "parameters": {}})
    caller.publish(f"service/{SERVICE}", request, response_topic=reply)
    body = _expect_envelope_answer(caller.wait_for(reply), request, "error")
    expect_error_body(body, "NotFound", details={"functions": FUNCTIONS})


def test_envelope_input_is_validated(caller: Caller) -> None:
    reply = caller.new_reply_topic()
    request = _envelope(reply, body={"function": "echo", "parameters": {"text": 5}})
    caller.publish(f"service/{SERVICE}", request)
    body = _expect_envelope_answer(caller.wait_for(reply), request, "error")
    errors = expect_error_body(body, "ValidationError")["details"]["errors"]
    assert [e["path"] for e in errors] == ["text"]


@pytest.mark.parametrize(
    "fields",
    [
        {"callId": 5},
        {"callId": "c" * 257},
        {"messageId": ["m"]},
        {"messageId": "m" * 257},
        {"headers": ["x"]},
        {"body": 1},
        {"body": {"parameters": {"text": "x"}}},
        {"body": {"function": 5, "parameters": {"text": "x"}}},
        {"body": {"function": "echo", "parameters": ["x"]}},
    ],
    ids=[
        "callId-number",
        "callId-257-bytes",
        "messageId-array",
        "messageId-257-bytes",
        "headers-array",
        "body-number",
        "body-no-function",
        "function-number",
        "parameters-array",
    ],
)
def test_envelope_fields_of_the_wrong_type_are_validation_errors(
    caller: Caller, fields: dict[str, Any]
) -> None:
    reply = caller.new_reply_topic()
    correlation = new_call_id()
    request = _envelope(reply, **fields)
    caller.publish(f"service/{SERVICE}", request, correlation=correlation)
    raw = caller.wait_for(reply)
    assert raw.statuses == ["error"]
    assert raw.correlation == correlation
    answer = raw.json()
    assert answer["headers"] == {"content-type": "application/json", "status": "error"}
    body = expect_error_body(answer["body"], "ValidationError")
    if fields == {"callId": "c" * 257}:
        assert body["details"] == {"limit": 256, "size": 257}


def test_non_json_envelope_is_a_validation_error(caller: Caller) -> None:
    reply = caller.new_reply_topic()
    correlation = new_call_id()
    caller.publish(f"service/{SERVICE}", b"{not json", response_topic=reply, correlation=correlation)
    raw = caller.wait_for(reply)
    assert raw.statuses == ["error"] and raw.correlation == correlation
    expect_error_body(raw.json()["body"], "ValidationError", details=None)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("function", "payload", "paths"),
    [
        ("echo", {}, [""]),
        ("echo", {"text": 5}, ["text"]),
        ("echo", {"text": "x", "extra": 1}, [""]),
        ("echo", {"text": "x" * 101}, ["text"]),
        ("echo", {"text": ""}, ["text"]),
        ("echo", {"text": "x", "count": 1.5}, ["count"]),
        ("echo", {"text": "x", "count": 1001}, ["count"]),
        ("echo", {"text": "x", "tags": ["a", 1]}, ["tags/1"]),
        ("echo", {"text": "", "count": -1, "tags": ["a"] * 6, "zz": 1}, ["", "count", "tags", "text"]),
        ("fail", {"kind": "nope", "message": "m"}, ["kind"]),
        ("tally", {"key": None}, ["key"]),
        ("sleep", {"ms": 60001}, ["ms"]),
        ("badOutput", {"x": 1}, [""]),
    ],
    ids=[
        "missing-required",
        "wrong-type",
        "extra-property",
        "too-long",
        "too-short",
        "not-an-integer",
        "over-maximum",
        "array-item",
        "several-sorted",
        "bad-enum",
        "null",
        "sleep-over-maximum",
        "empty-schema-extra",
    ],
)
def test_input_that_breaks_the_schema_lists_each_problem(
    caller: Caller, function: str, payload: dict[str, Any], paths: list[str]
) -> None:
    correlation = new_call_id()
    answer = caller.call(function, payload, correlation=correlation)
    body = expect_error(answer, "ValidationError", correlation)
    assert set(body["details"]) == {"errors"}, body
    errors = body["details"]["errors"]
    assert [e["path"] for e in errors] == paths, errors
    for error in errors:
        assert set(error) == {"path", "message"} and isinstance(error["message"], str) and error["message"]


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(b"[1, 2]", "array"), (b"null", "null"), (b"5", "number"), (b'"text"', "string"), (b"", "empty")],
)
def test_input_that_is_not_an_object_is_a_validation_error(caller: Caller, payload: bytes, kind: str) -> None:
    correlation = new_call_id()
    answer = caller.call("echo", payload, correlation=correlation)
    body = expect_error(answer, "ValidationError", correlation)
    assert body["details"] == {"errors": [{"path": "", "message": body["details"]["errors"][0]["message"]}]}


@pytest.mark.parametrize("payload", [b"{nope", b'{"text": "x"', b"\xff\xfe", b"{'text': 'x'}"])
def test_payload_that_is_not_json_is_a_validation_error(caller: Caller, payload: bytes) -> None:
    correlation = new_call_id()
    answer = caller.call("echo", payload, correlation=correlation)
    expect_error(answer, "ValidationError", correlation, details=None)


def test_payload_over_6_mib_is_a_validation_error(caller: Caller) -> None:
    correlation = new_call_id()
    payload = json.dumps({"text": "x", "pad": "p" * MAX_PAYLOAD}).encode()
    answer = caller.call("echo", payload, correlation=correlation, timeout=60)
    expect_error(answer, "ValidationError", correlation, details={"limit": MAX_PAYLOAD, "size": len(payload)})


# --------------------------------------------------------------------------- typed errors


@pytest.mark.parametrize(
    ("kind", "error_type", "details"),
    [
        ("business", "BusinessLogicError", {"reason": "asked"}),
        ("notfound", "NotFound", {"reason": "asked"}),
        ("forbidden", "Forbidden", None),
    ],
)
def test_errors_raised_on_purpose_reach_the_caller(
    caller: Caller, kind: str, error_type: str, details: Any
) -> None:
    correlation = new_call_id()
    message = f"asked for {kind} {uuid.uuid4().hex[:6]}"
    answer = caller.call("fail", {"kind": kind, "message": message}, correlation=correlation)
    body = expect_error(answer, error_type, correlation, details=details)
    assert body["message"] == message


def test_unexpected_failure_is_a_system_error_that_hides_its_message(caller: Caller) -> None:
    correlation = new_call_id()
    marker = f"secret-marker-{uuid.uuid4().hex}"
    answer = caller.call("fail", {"kind": "system", "message": marker}, correlation=correlation)
    expect_error(answer, "SystemError", correlation, details={"callId": correlation.hex()})
    assert marker.encode() not in answer.payload


def test_output_that_breaks_its_schema_is_a_system_error(caller: Caller) -> None:
    correlation = new_call_id()
    answer = caller.call("badOutput", {}, correlation=correlation)
    expect_error(answer, "SystemError", correlation, details=None)
