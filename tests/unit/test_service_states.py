"""Telling apart why a call reached nobody (PUBACK 0x10), from the published service state (pure)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dormant.errors import NotFound, Unavailable
from dormant.routing import ServiceStates, explain_unserved, parse_service_state
from dormant_catalog.status import service_state

FNS = ("echo", "getUser")


def state(**versions: dict[str, Any]) -> dict[str, Any]:
    """A published state built by the catalog's own builder: versions "v1"=... -> 1."""
    parsed = {int(k[1:]): v for k, v in versions.items()}
    live = next((v for v, e in parsed.items() if e.get("live")), None)
    entries = {v: {"state": e["state"], "reason": e["reason"]} for v, e in parsed.items()}
    functions = {v: e.get("functions", FNS) for v, e in parsed.items()}
    return service_state("svc", entries, functions, 1 if live else None, live)


SERVING = {"state": "serving", "reason": "svc v1 has 1/1 replicas serving", "live": True}
IDLE = {"state": "not-deployed", "reason": "svc v2 is not deployed"}
FAILED = {
    "state": "failed",
    "reason": "svc failed to start v3 (2 attempts): RuntimeError: boom",
    "live": True,
}


def explain(
    payload: dict[str, Any] | None, function: str, version: int | None = None, *, published: bool = True
) -> Any:
    parsed = None if payload is None else parse_service_state(orjson.dumps(payload))
    return explain_unserved("svc", function, version, parsed, published=published, topic="service/svc/x")


@pytest.mark.parametrize(
    ("payload", "function", "version", "kind", "text"),
    [
        (None, "echo", None, NotFound, "no service named 'svc'"),
        (state(v1=SERVING), "echo", 7, NotFound, "'svc' has no version 7"),
        (state(v1=SERVING), "nope", None, NotFound, "svc v1 has no function 'nope'"),
        (state(v1=SERVING, v2=IDLE), "nope", 2, NotFound, "svc v2 has no function 'nope'"),
        (
            state(v1=SERVING, v2=IDLE),
            "echo",
            2,
            Unavailable,
            "svc v2.echo is unavailable: svc v2 is not deployed",
        ),
        (state(v2=IDLE), "echo", None, Unavailable, "svc.echo is unavailable: svc is not deployed"),
        (state(v3=FAILED), "echo", None, Unavailable, "failed to start v3 (2 attempts): RuntimeError: boom"),
        (state(v1=SERVING), "echo", None, Unavailable, "but nothing answered on service/svc/x"),
        (state(v1={**SERVING, "functions": None}), "anything", None, Unavailable, "nothing answered"),
    ],
)
def test_each_cause_gets_its_own_error(
    payload: dict[str, Any] | None, function: str, version: int | None, kind: type, text: str
) -> None:
    error = explain(payload, function, version)
    assert type(error) is kind and text in error.message, error
    assert error.details["noSubscribers"] is True  # tells it from an answer a runtime gave


def test_a_missing_state_proves_nothing_unless_states_are_published() -> None:
    error = explain(None, "echo", published=False)
    assert isinstance(error, Unavailable) and "is the controller running" in error.message


def test_states_are_fed_replaced_and_deleted_and_malformed_ones_ignored() -> None:
    states = ServiceStates()
    assert not states.feed("mesh/routes/svc", b"{}")
    assert states.feed("mesh/services", b'{"publisher": "x"}') and states.published
    assert states.feed("mesh/services/svc", orjson.dumps(state(v1=SERVING)))
    got = states.get("svc")
    assert got is not None and got.live == 1 and got.versions[1].functions == frozenset(FNS)
    states.feed("mesh/services/svc", b"")
    assert states.get("svc") is None
    for junk in (b"not json", b"[]", b'{"versions": 5}', b'{"versions": {"x": {}, "2": "no"}}'):
        states.feed("mesh/services/bad", junk)
        parsed = states.get("bad")
        assert parsed is None or parsed.versions == {}
    weird = parse_service_state(b'{"versions": {"1": {"functions": 9, "state": 3}}, "functions": [["a"]]}')
    assert weird is not None and weird.versions[1].functions is None and weird.versions[1].state == "unknown"
    states.feed("mesh/services", b"")
    assert not states.published
