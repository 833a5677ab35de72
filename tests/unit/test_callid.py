"""``dormant.callid``: one text ↔ bytes rule and deterministic derived ids, used by every component."""

from __future__ import annotations

from dormant import callid, wire
from dormant.callid import MAX_CALL_ID_BYTES, CallId


def test_text_goes_to_the_wire_as_utf8_and_comes_back_the_same() -> None:
    for text in ("call-42", "idem-" + "a" * 40, "q-trigger-1-abc", "x" * 200):
        sent = CallId.from_text(text)
        assert sent.data == text.encode()
        assert CallId(sent.data).text == text


def test_random_bytes_read_as_hex_and_that_text_round_trips() -> None:
    fresh = CallId.new()
    assert len(fresh.data) == 16
    text = fresh.text
    assert text == fresh.data.hex() or text.isprintable()
    # What a caller sends back from the text (a retry) is read as the same text.
    assert CallId(CallId.from_text(text).data).text == text


def test_oversized_and_empty_correlation_have_short_stable_names() -> None:
    big = CallId(b"x" * (MAX_CALL_ID_BYTES + 1))
    assert big.text.startswith("oversized-") and len(big.text) < 64
    assert CallId(b"").text == ""


def test_of_accepts_each_form_a_caller_may_give() -> None:
    assert CallId.of("abc").data == b"abc"
    assert CallId.of(b"\x00\x01").data == b"\x00\x01"
    given = CallId.new()
    assert CallId.of(given) is given
    assert CallId.of(None) != CallId.of(None)


def test_child_ids_are_deterministic_per_parent_and_key() -> None:
    parent = CallId.from_text("parent-1")
    assert parent.child("svc.fn#1") == parent.child("svc.fn#1")
    assert parent.child("svc.fn#1") != parent.child("svc.fn#2")
    assert parent.child("svc.fn#1") != CallId.from_text("parent-2").child("svc.fn#1")
    assert len(parent.child("k").data) <= MAX_CALL_ID_BYTES


def test_gateway_ids_are_deterministic_and_distinct_by_caller_and_target() -> None:
    assert callid.idempotent("ann", "s.f", "k") == callid.idempotent("ann", "s.f", "k")
    assert callid.idempotent("ann", "s.f", "k") != callid.idempotent("bob", "s.f", "k")
    assert callid.idempotent("ann", "s.f", "k") != callid.idempotent("ann", "s.g", "k")
    assert callid.attempt("async-1", 2) == "async-1.2"
    assert callid.scheduled("t1", 1700000000) == "cron-t1-1700000000"
    assert callid.queued("t1", "m-7", b"body") == "q-t1-m-7"
    assert (
        callid.queued("t1", None, b"body")
        == callid.queued("t1", "", b"body")
        != callid.queued("t1", None, b"other")
    )
    assert callid.fresh("async-").startswith("async-") and callid.fresh() != callid.fresh()


def test_the_wire_decoder_names_a_call_by_the_same_rule() -> None:
    call = wire.decode_call("service/svc/f", b"{}", correlation=b"\xff\x00")
    assert call.call_id == CallId(b"\xff\x00").text == "ff00"
