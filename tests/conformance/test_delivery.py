"""Conformance: callId de-duplication, deadlines and timeouts, and bad input that must not hurt anyone.

Whether a handler ran is observed through the service's ``tally`` counter (``sleep`` with a ``key``
counts too, once it completes): a call that must not run is followed by a ``tally`` of the same key,
which must then report the first run.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from .conftest import Stack
from .harness import SERVICE, Caller, expect_error, expect_ok, new_call_id, raw_publish

pytestmark = pytest.mark.usefixtures("runtime")

SILENCE_S = 1.5
"""How long a test waits for an answer that must not come (after a later call was answered)."""


def _key() -> str:
    return f"k-{uuid.uuid4().hex[:12]}"


def _runs(caller: Caller, key: str) -> int:
    """Count one more run of ``key`` and return the count (so: runs before this call + 1)."""
    correlation = new_call_id()
    body = expect_ok(caller.call("tally", {"key": key}, correlation=correlation), correlation)
    assert body["key"] == key
    runs = body["runs"]
    assert isinstance(runs, int)
    return runs


# --------------------------------------------------------------------------- de-duplication


def test_a_repeated_call_id_gets_the_stored_answer_without_running_again(caller: Caller) -> None:
    key, correlation = _key(), new_call_id()
    first = caller.call("tally", {"key": key}, correlation=correlation)
    second = caller.call("tally", {"key": key}, correlation=correlation)
    assert expect_ok(first, correlation) == {"key": key, "runs": 1}
    assert expect_ok(second, correlation) == {"key": key, "runs": 1}
    assert _runs(caller, key) == 2


def test_a_repeated_envelope_call_id_gets_the_stored_answer(caller: Caller) -> None:
    key, call_id = _key(), f"env-{uuid.uuid4().hex}"
    bodies = []
    for attempt in range(2):
        reply = caller.new_reply_topic()
        caller.publish(
            f"service/{SERVICE}",
            {
                "messageId": f"m-{attempt}",
                "callId": call_id,
                "replyTo": reply,
                "body": {"function": "tally", "parameters": {"key": key}},
            },
        )
        answer = caller.wait_for(reply).json()
        assert answer["headers"]["status"] == "ok" and answer["inReplyTo"] == f"m-{attempt}"
        bodies.append(answer["body"])
    assert bodies == [{"key": key, "runs": 1}, {"key": key, "runs": 1}]
    assert _runs(caller, key) == 2


def test_a_call_id_reused_with_another_input_is_a_conflict_and_does_not_run(caller: Caller) -> None:
    first_key, other_key, correlation = _key(), _key(), new_call_id()
    assert (
        expect_ok(caller.call("tally", {"key": first_key}, correlation=correlation), correlation)["runs"] == 1
    )
    answer = caller.call("tally", {"key": other_key}, correlation=correlation)
    expect_error(answer, "Conflict", correlation, details={"callId": correlation.hex(), "function": "tally"})
    assert _runs(caller, other_key) == 1


def test_a_repeat_while_the_first_still_runs_waits_for_its_answer(caller: Caller) -> None:
    key, correlation = _key(), new_call_id()
    first, second = caller.new_reply_topic(), caller.new_reply_topic()
    request = {"ms": 1500, "key": key}
    caller.publish(f"service/{SERVICE}/sleep", request, response_topic=first, correlation=correlation)
    caller.publish(f"service/{SERVICE}/sleep", request, response_topic=second, correlation=correlation)
    assert expect_ok(caller.wait_for(first), correlation) == {"slept": 1500}
    assert expect_ok(caller.wait_for(second), correlation) == {"slept": 1500}
    assert _runs(caller, key) == 2  # the sleep completed once, then this tally


@pytest.mark.parametrize("correlation", [b"", None], ids=["empty", "absent"])
def test_a_call_without_call_id_is_not_deduplicated(caller: Caller, correlation: bytes | None) -> None:
    key = _key()
    for expected in (1, 2):
        reply = caller.new_reply_topic()
        caller.publish(
            f"service/{SERVICE}/tally", {"key": key}, response_topic=reply, correlation=correlation
        )
        answer = caller.wait_for(reply)
        assert answer.statuses == ["ok"]
        assert answer.correlation in (None, b"")
        assert answer.json() == {"key": key, "runs": expected}


# --------------------------------------------------------------------------- deadlines


def _epoch_ms(offset_s: float = 0.0) -> str:
    return str(int((time.time() + offset_s) * 1000))


def test_a_deadline_in_the_past_is_a_timeout_and_the_handler_does_not_run(caller: Caller) -> None:
    key, correlation = _key(), new_call_id()
    answer = caller.call(
        "tally", {"key": key}, correlation=correlation, user_properties=[("deadline", _epoch_ms(-60))]
    )
    expect_error(answer, "TimeoutError", correlation, details=None)
    assert _runs(caller, key) == 1


def test_the_earliest_of_several_deadlines_counts(caller: Caller) -> None:
    key, correlation = _key(), new_call_id()
    properties = [("deadline", _epoch_ms(3600)), ("deadline", "1000"), ("deadline", _epoch_ms(60))]
    answer = caller.call("tally", {"key": key}, correlation=correlation, user_properties=properties)
    expect_error(answer, "TimeoutError", correlation, details=None)
    assert _runs(caller, key) == 1


def _expect_cut_off(answer: Any, correlation: bytes, limit_s: float) -> None:
    body = expect_error(answer, "TimeoutError", correlation)
    assert isinstance(body["details"], dict) and set(body["details"]) == {"timeout"}, body
    assert 0 < body["details"]["timeout"] <= limit_s, body


def _expect_never_completed(caller: Caller, key: str, published: float, sleep_ms: int) -> None:
    """Once the sleep would have completed (plus slack), the key has still not been counted."""
    time.sleep(max(0.0, published + sleep_ms / 1000 + 0.5 - time.monotonic()))
    assert _runs(caller, key) == 1


def test_a_deadline_user_property_cuts_the_call_off(caller: Caller) -> None:
    key, correlation = _key(), new_call_id()
    published = time.monotonic()
    answer = caller.call(
        "sleep",
        {"ms": 1800, "key": key},
        correlation=correlation,
        user_properties=[("deadline", _epoch_ms(0.8))],
    )
    _expect_cut_off(answer, correlation, 0.8)
    _expect_never_completed(caller, key, published, 1800)


def test_message_expiry_bounds_the_deadline(caller: Caller) -> None:
    key, correlation = _key(), new_call_id()
    published = time.monotonic()
    answer = caller.call("sleep", {"ms": 1800, "key": key}, correlation=correlation, expiry_s=1)
    _expect_cut_off(answer, correlation, 1.0)
    _expect_never_completed(caller, key, published, 1800)


def test_a_function_past_its_timeout_is_a_timeout_error(caller: Caller) -> None:
    correlation = new_call_id()
    started = time.monotonic()
    answer = caller.call("sleep", {"ms": 5000}, correlation=correlation, timeout=30)
    elapsed = time.monotonic() - started
    body = expect_error(answer, "TimeoutError", correlation)
    assert body["details"] == {"timeout": 2}, body
    # The function's timeout is 2 s: cut off well before the 5 s sleep ends (generous for a busy machine).
    assert 1.5 <= elapsed < 4.5, elapsed


@pytest.mark.parametrize(
    "deadline",
    ["-1", "+5", "1.5", "1e3", "1" * 16, "1" + "0" * 400, "", " 5", "\uff11\uff12", "0x10"],
    ids=["sign", "plus", "decimal", "exponent", "16-digits", "huge", "empty", "space", "fullwidth", "hex"],
)
def test_a_malformed_deadline_is_a_validation_error_and_does_not_run(caller: Caller, deadline: str) -> None:
    key, correlation = _key(), new_call_id()
    answer = caller.call(
        "tally", {"key": key}, correlation=correlation, user_properties=[("deadline", deadline)]
    )
    expect_error(answer, "ValidationError", correlation, details={"property": "deadline"})
    assert _runs(caller, key) == 1


def test_one_malformed_deadline_among_valid_ones_is_a_validation_error(caller: Caller) -> None:
    correlation = new_call_id()
    properties = [("deadline", _epoch_ms(60)), ("deadline", "soon")]
    answer = caller.call("tally", {"key": _key()}, correlation=correlation, user_properties=properties)
    expect_error(answer, "ValidationError", correlation, details={"property": "deadline"})


# --------------------------------------------------------------------------- bad input


BAD_REPLY_TOPICS = [
    f"service/{SERVICE}/elsewhere",
    "mesh/elsewhere",
    "elsewhere/x",
    "reply",
    "reply//x",
    "reply/x/",
    "reply/" + "y" * 1100,
]


def test_a_response_topic_outside_reply_is_refused_silently(caller: Caller) -> None:
    key = _key()
    mark = caller.mark()
    for topic in BAD_REPLY_TOPICS:
        caller.publish(
            f"service/{SERVICE}/tally", {"key": key}, response_topic=topic, correlation=new_call_id()
        )
    _expect_silence(caller, mark, key, set(BAD_REPLY_TOPICS))


BAD_REPLY_TOS: list[Any] = [
    "reply/+/x",
    "reply/#",
    "reply/a/+",
    f"service/{SERVICE}/elsewhere",
    "elsewhere/x",
    "reply//x",
    5,
    ["reply/x"],
]


def test_an_envelope_reply_to_that_is_not_allowed_gets_no_answer_anywhere(caller: Caller) -> None:
    key = _key()
    fallback = caller.new_reply_topic()  # a valid Response Topic too: it must not be used either
    mark = caller.mark()
    for reply_to in BAD_REPLY_TOS:
        envelope = {
            "callId": f"env-{uuid.uuid4().hex}",
            "replyTo": reply_to,
            "body": {"function": "tally", "parameters": {"key": key}},
        }
        caller.publish(f"service/{SERVICE}", envelope, response_topic=fallback, correlation=new_call_id())
    watched = {fallback} | {topic for topic in BAD_REPLY_TOS if isinstance(topic, str)}
    _expect_silence(caller, mark, key, watched)


def _expect_silence(caller: Caller, mark: int, key: str, topics: set[str]) -> None:
    """The runtime still answers (and the refused calls did not run), and nothing was published to the
    refused topics or anywhere else with a ``status``, except that one answer."""
    assert _runs(caller, key) == 1
    time.sleep(SILENCE_S)
    published = [r for r in caller.seen_since(mark) if r.topic in topics or r.statuses]
    answers = [r for r in published if r.json() == {"key": key, "runs": 1}]
    assert len(answers) == 1 and answers[0].topic.startswith(caller.inbox + "/"), published
    assert published == answers, [(r.topic, r.payload[:100]) for r in published if r not in answers]


def test_a_call_id_over_256_bytes_is_a_validation_error(caller: Caller) -> None:
    key = _key()
    correlation = b"c" * 257
    answer = caller.call("tally", {"key": key}, correlation=correlation)
    expect_error(answer, "ValidationError", correlation, details={"limit": 256, "size": 257})
    assert _runs(caller, key) == 1
    longest = b"d" * 256
    assert expect_ok(caller.call("tally", {"key": key}, correlation=longest), longest)["runs"] == 2


def test_a_user_property_that_is_not_utf8_is_ignored(caller: Caller, stack: Stack) -> None:
    """Sent byte by byte: Mosquitto checks UTF-8 and drops such a sender, so the runtime never sees
    it; a broker that passes it on must get an answer in which the bad pair was ignored."""
    reply = caller.new_reply_topic()
    correlation = new_call_id()
    acked = raw_publish(
        "127.0.0.1",
        stack.broker.port,
        f"service/{SERVICE}/echo",
        b'{"text": "raw"}',
        response_topic=reply,
        correlation=correlation,
        user_properties=[(b"x-probe", b"\xff\xfe-not-utf8")],
    )
    if acked:
        assert expect_ok(caller.wait_for(reply), correlation)["probe"] is None
    good = new_call_id()
    answer = caller.call(
        "echo", {"text": "still here"}, correlation=good, user_properties=[("x-probe", "ok")]
    )
    assert expect_ok(answer, good)["probe"] == "ok"
    if not acked:
        time.sleep(0.5)
        assert caller.seen_on(reply) == []
