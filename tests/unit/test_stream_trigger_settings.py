"""Validation of stream trigger (NATS JetStream) settings: defaults, bounds, subjects, unknown keys."""

from __future__ import annotations

from typing import Any

import pytest

from dormant.errors import ValidationError
from dormant_gateway.triggers.settings import subject_matches, validate_trigger
from dormant_gateway.workers.stream import durable_name, stream_call_id


def _stream(**config: Any) -> dict[str, Any]:
    return validate_trigger(
        {
            "type": "stream",
            "function": "count",
            "config": {"stream": "orders", "subject": "orders.in", **config},
        }
    )[2]


def _refused(path: str, **config: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        _stream(**config)
    assert caught.value.details["errors"][0]["path"] == path


def test_defaults() -> None:
    assert _stream() == {
        "stream": "orders",
        "subject": "orders.in",
        "batchSize": 10,
        "batchWindowMs": 50,
        "startPosition": "latest",
        "maxAttempts": 3,
        "backoffSeconds": 1.0,
        "deadLetterSubject": "orders.in.dlq",
    }


def test_every_setting_is_kept() -> None:
    config = _stream(
        subject="orders.*.created",
        batchSize=100,
        batchWindowMs=0,
        startPosition="start",
        maxAttempts=1,
        backoffSeconds=0,
        deadLetterSubject="dead.orders",
        alias="live",
    )
    assert config["batchSize"] == 100 and config["batchWindowMs"] == 0 and config["startPosition"] == "start"
    assert config["deadLetterSubject"] == "dead.orders" and config["alias"] == "live"


@pytest.mark.parametrize(
    ("path", "config"),
    [
        ("/config/batchSizes", {"batchSizes": 5}),
        ("/config/deliverPolicy", {"deliverPolicy": "all"}),
        ("/config/stream", {"stream": "orders.in"}),
        ("/config/stream", {"stream": ""}),
        ("/config/subject", {"subject": "orders..in"}),
        ("/config/subject", {"subject": "orders.>.in"}),
        ("/config/subject", {"subject": "orders in"}),
        ("/config/subject", {"subject": 5}),
        ("/config/batchSize", {"batchSize": 0}),
        ("/config/batchSize", {"batchSize": 101}),
        ("/config/batchSize", {"batchSize": True}),
        ("/config/batchWindowMs", {"batchWindowMs": -1}),
        ("/config/batchWindowMs", {"batchWindowMs": 60_001}),
        ("/config/startPosition", {"startPosition": "trim_horizon"}),
        ("/config/maxAttempts", {"maxAttempts": 0}),
        ("/config/backoffSeconds", {"backoffSeconds": 301}),
        ("/config/deadLetterSubject", {"deadLetterSubject": "dead.*"}),
        ("/config/deadLetterSubject", {"subject": "orders.>"}),  # a wildcard needs an explicit one
        ("/config/deadLetterSubject", {"subject": "orders.>", "deadLetterSubject": "orders.in.dlq"}),
        ("/config/deadLetterSubject", {"deadLetterSubject": "orders.in"}),
    ],
)
def test_refused_with_the_field_named(path: str, config: dict[str, Any]) -> None:
    _refused(path, **config)


def test_stream_name_and_subject_are_required() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_trigger({"type": "stream", "function": "count", "config": {"subject": "a"}})
    assert caught.value.details["errors"][0]["path"] == "/config/stream"
    with pytest.raises(ValidationError) as caught:
        validate_trigger({"type": "stream", "function": "count", "config": {"stream": "a"}})
    assert caught.value.details["errors"][0]["path"] == "/config/subject"


def test_subject_matching() -> None:
    assert subject_matches("a.*.c", "a.b.c")
    assert not subject_matches("a.*.c", "a.b.c.d")
    assert subject_matches("a.>", "a.b.c")
    assert not subject_matches("a.>", "a")
    assert not subject_matches("a.b", "a.b.dlq")


def test_durable_name_and_call_ids() -> None:
    assert durable_name("trg-1") == "dormant-trg-1"
    one = stream_call_id("trg-1", 1700000000000, 42)
    assert one == stream_call_id("trg-1", 1700000000000, 42)  # every delivery: the same callId
    assert one != stream_call_id("trg-1", 1700000000001, 42)  # a stream made again starts over
    assert one != stream_call_id("trg-1", 1700000000000, 43)
