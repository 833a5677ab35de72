"""The runtime dispatcher: validation, handler errors, timeouts and deadlines, on a hand-built spec."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from dormant import BusinessLogicError, Context
from dormant.app import FunctionSpec, ServiceSpec
from dormant.wire import Call
from dormant_runtime.dispatcher import Dispatcher


class In(BaseModel):
    name: str
    delay: float = 0.0


class Out(BaseModel):
    greeting: str


IN_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 5}, "delay": {"type": "number"}},
    "required": ["name"],
    "additionalProperties": False,
}
OUT_SCHEMA = {"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"]}


class Greeter:
    async def hello(self, request: In, ctx: Context) -> Out:
        await asyncio.sleep(request.delay)
        return Out(greeting=f"hello {request.name} ({ctx.call_id})")

    async def refuse(self, request: In, ctx: Context) -> Out:
        raise BusinessLogicError("not today", {"name": request.name})

    async def crash(self, request: In, ctx: Context) -> Out:
        raise RuntimeError("secret internals /etc/passwd")

    async def broken(self, request: In, ctx: Context) -> dict[str, Any]:
        return {"greeting": 42}

    async def remaining(self, request: In, ctx: Context) -> Out:
        return Out(greeting=repr(ctx.remaining()))

    async def blocked(self, request: In, ctx: Context) -> Out:
        await RELEASE.wait()
        return Out(greeting="released")


RELEASE = asyncio.Event()


def _spec(method: str, timeout: float = 30.0) -> FunctionSpec:
    return FunctionSpec(method, method, In, Out, IN_SCHEMA, OUT_SCHEMA, timeout)


SERVICE = ServiceSpec(
    name="greeter",
    handler_class=Greeter,
    interface_hash="sha256:test",
    auth="off",
    functions={
        m: _spec(m, 0.2 if m == "hello" else 30.0)
        for m in ("hello", "refuse", "crash", "broken", "blocked", "remaining")
    },
)


def _call(function: str, params: Any, deadline: float | None = None) -> Call:
    return Call(
        service="greeter", function=function, version=1, call_id="c-1", params=params, deadline=deadline
    )


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher(SERVICE, 1)


async def test_ok(dispatcher: Dispatcher) -> None:
    assert await dispatcher.dispatch(_call("hello", {"name": "Ann"})) == (
        True,
        {"greeting": "hello Ann (c-1)"},
    )


async def test_schema_violation_names_the_field(dispatcher: Dispatcher) -> None:
    ok, body = await dispatcher.dispatch(_call("hello", {"name": "Annabelle"}))
    assert not ok and body["type"] == "ValidationError"
    assert body["details"]["errors"][0]["path"] == "name"
    assert "name" in body["message"]


async def test_unknown_function_is_not_found(dispatcher: Dispatcher) -> None:
    ok, body = await dispatcher.dispatch(_call("nope", {}))
    assert not ok and body["type"] == "NotFound"


async def test_business_error_passes_through(dispatcher: Dispatcher) -> None:
    ok, body = await dispatcher.dispatch(_call("refuse", {"name": "Bo"}))
    assert (ok, body) == (
        False,
        {"type": "BusinessLogicError", "message": "not today", "details": {"name": "Bo"}},
    )


async def test_crash_is_system_error_without_internals(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="dormant.runtime"):
        ok, body = await dispatcher.dispatch(_call("crash", {"name": "Bo"}))
    assert not ok and body["type"] == "SystemError"
    assert "passwd" not in str(body) and "Traceback" not in str(body)
    assert body["details"] == {"callId": "c-1"}
    assert (
        "c-1" in caplog.text and "RuntimeError" in caplog.text
    )  # the log keeps what the caller does not get


async def test_output_breaking_its_schema_is_system_error(dispatcher: Dispatcher) -> None:
    ok, body = await dispatcher.dispatch(_call("broken", {"name": "Bo"}))
    assert not ok and body["type"] == "SystemError"


async def test_function_timeout_is_enforced(dispatcher: Dispatcher) -> None:
    ok, body = await dispatcher.dispatch(_call("hello", {"name": "Bo", "delay": 5}))
    assert not ok and body["type"] == "TimeoutError"


async def test_past_deadline_is_not_started(dispatcher: Dispatcher) -> None:
    ok, body = await dispatcher.dispatch(_call("hello", {"name": "Bo"}, deadline=time.time() - 1))
    assert not ok and body["type"] == "TimeoutError" and "before it started" in body["message"]


async def test_a_slow_call_does_not_hold_up_others(dispatcher: Dispatcher) -> None:
    RELEASE.clear()
    slow = asyncio.create_task(dispatcher.dispatch(_call("blocked", {"name": "Bo"})))
    await asyncio.sleep(0)
    assert await dispatcher.dispatch(_call("hello", {"name": "Cy"})) == (True, {"greeting": "hello Cy (c-1)"})
    assert not slow.done()
    RELEASE.set()
    assert await slow == (True, {"greeting": "released"})


async def test_the_callers_deadline_reaches_the_handler(dispatcher: Dispatcher) -> None:
    ok, body = await dispatcher.dispatch(_call("remaining", {"name": "Bo"}, deadline=time.time() + 60))
    assert ok and 59 < float(body["greeting"]) <= 60
    ok, body = await dispatcher.dispatch(_call("remaining", {"name": "Bo"}))
    assert ok and body["greeting"] == "None"


async def test_a_running_call_is_cancelled_at_the_callers_deadline(dispatcher: Dispatcher) -> None:
    RELEASE.clear()
    ok, body = await dispatcher.dispatch(_call("blocked", {"name": "Bo"}, deadline=time.time() + 0.2))
    assert not ok and body["type"] == "TimeoutError"


# --------------------------------------------------------------------------- nulls, names, formats


class Row(BaseModel):
    """Shaped as datamodel-code-generator writes it (with populate_by_name, as `dormant generate` asks)."""

    model_config = ConfigDict(populate_by_name=True)
    class_: str = Field(..., alias="class")
    from_: str | None = Field(..., alias="from")
    user_id: int | None = Field(None, alias="user-id")
    note: str | None = None
    maybe: int | None = None


ROW_SCHEMA = {
    "type": "object",
    "properties": {
        "class": {"type": "string"},
        "from": {"type": ["string", "null"]},
        "user-id": {"type": "integer"},
        "note": {"type": "string"},
        "maybe": {"type": ["integer", "null"]},
    },
    "required": ["class", "from"],
    "additionalProperties": False,
}


class Rows:
    async def echo(self, request: Row, ctx: Context) -> Row:
        return request

    async def by_name(self, request: Row, ctx: Context) -> Row:
        return Row(class_="c", from_=None, user_id=7)

    async def copy(self, request: Row, ctx: Context) -> Row:
        return Row(**request.model_dump())  # every optional field explicitly None

    async def nested(self, request: Row, ctx: Context) -> Holder:
        return Holder(rows=[Row(class_="a", from_=None, note=None), Row(class_="b", from_="x", maybe=None)])


class Holder(BaseModel):
    rows: list[Row]


HOLDER_SCHEMA = {
    "type": "object",
    "properties": {"rows": {"type": "array", "items": ROW_SCHEMA}},
    "required": ["rows"],
}

ROWS = ServiceSpec(
    name="rows",
    handler_class=Rows,
    interface_hash="sha256:test",
    auth="off",
    functions={
        m: FunctionSpec(m, m, Row, Holder if m == "nested" else Row, ROW_SCHEMA, out, 30.0)
        for m, out in (
            ("echo", ROW_SCHEMA),
            ("by_name", ROW_SCHEMA),
            ("copy", ROW_SCHEMA),
            ("nested", HOLDER_SCHEMA),
        )
    },
)


def _rows_call(function: str, params: Any) -> Call:
    return Call(service="rows", function=function, version=1, call_id="r-1", params=params)


@pytest.mark.parametrize(
    "params",
    [
        {"class": "a", "from": None},
        {"class": "a", "from": "b", "user-id": 3},
        {"class": "a", "from": None, "maybe": None},
        {"class": "a", "from": "b", "maybe": 5, "note": "n"},
    ],
)
async def test_what_the_schema_allows_round_trips_exactly(params: dict[str, Any]) -> None:
    assert await Dispatcher(ROWS, 1).dispatch(_rows_call("echo", params)) == (True, params)


async def test_a_model_with_aliased_names_is_built_by_its_python_names() -> None:
    ok, body = await Dispatcher(ROWS, 1).dispatch(_rows_call("by_name", {"class": "a", "from": None}))
    assert ok and body == {"class": "c", "from": None, "user-id": 7}


async def test_a_null_the_schema_refuses_means_absent() -> None:
    ok, body = await Dispatcher(ROWS, 1).dispatch(_rows_call("copy", {"class": "a", "from": None}))
    # "user-id" and "note" may not be null: absent. "maybe" may: kept as the handler set it.
    assert ok and body == {"class": "a", "from": None, "maybe": None}
    ok, body = await Dispatcher(ROWS, 1).dispatch(_rows_call("nested", {"class": "a", "from": None}))
    assert ok and body == {"rows": [{"class": "a", "from": None}, {"class": "b", "from": "x", "maybe": None}]}


async def test_python_names_in_the_input_fill_nothing() -> None:
    # "class_" is not a property of the schema; it must not fill the field behind "class".
    schema = {**ROW_SCHEMA, "additionalProperties": True, "required": ["from"]}
    spec = ServiceSpec(
        "rows",
        Rows,
        "sha256:t",
        {"echo": FunctionSpec("echo", "echo", Row, Row, schema, schema, 30)},
        auth="off",
    )
    ok, body = await Dispatcher(spec, 1).dispatch(_rows_call("echo", {"class_": "sneaky", "from": None}))
    assert not ok and body["type"] == "ValidationError"


class Stamp(BaseModel):
    value: str


class Stamps:
    async def check(self, request: Stamp, ctx: Context) -> Stamp:
        return request


FORMAT_SAMPLES = {
    "date": ("2024-02-29", "2023-02-29"),
    "date-time": ("2024-01-01T12:00:00.5+01:00", "1700000000"),
    "time": ("12:00:00Z", "25:00:00Z"),
    "duration": ("P1Y2M3DT4H", "1 day"),
    "email": ("ann@example.com", "ann.example.com"),
    "idn-email": ("\u00e4nn@example.com", "\u00e4nn"),
    "hostname": ("api.example.com", "-bad-.example"),
    "idn-hostname": ("b\u00fccher.example", "a..b"),
    "ipv4": ("192.168.0.1", "256.1.1.1"),
    "ipv6": ("2001:db8::1", "2001:db8:::1"),
    "uri": ("https://example.com/a?b=c", "not a uri"),
    "uri-reference": ("/a/b?c", "\\\\bad"),
    "iri": ("https://\u00e9xample.com/\u00e9", "\u00e9xample"),
    "iri-reference": ("/\u00e9/b", "\\\\bad"),
    "uri-template": ("/users/{id}", "/users/{id"),
    "uuid": ("0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5bd9cb469fa16570867728950e"),
    "json-pointer": ("/a/b~0c", "a/b"),
    "relative-json-pointer": ("1/a", "/a"),
    "regex": ("^[a-z]+$", "[unclosed"),
}


def test_every_checked_format_has_a_sample() -> None:
    from dormant._formats import CHECKED_FORMATS, missing_checkers

    assert set(FORMAT_SAMPLES) == CHECKED_FORMATS
    assert missing_checkers() == []  # the jsonschema[format-nongpl] extras are installed


@pytest.mark.parametrize("fmt", sorted(FORMAT_SAMPLES))
async def test_each_format_is_checked_on_input_and_output(fmt: str) -> None:
    schema = {
        "type": "object",
        "properties": {"value": {"type": "string", "format": fmt}},
        "required": ["value"],
    }
    spec = ServiceSpec(
        "f",
        Stamps,
        "sha256:t",
        {"check": FunctionSpec("check", "check", Stamp, Stamp, schema, schema, 30)},
        auth="off",
    )
    good, bad = FORMAT_SAMPLES[fmt]
    dispatcher = Dispatcher(spec, 1)
    assert await dispatcher.dispatch(_rows_call("check", {"value": good})) == (True, {"value": good})
    ok, body = await dispatcher.dispatch(_rows_call("check", {"value": bad}))
    assert not ok and body["type"] == "ValidationError", (fmt, bad, body)


def test_a_format_the_runtime_cannot_check_fails_the_load() -> None:
    from dormant_runtime.dispatcher import UncheckedFormat

    schema = {"type": "object", "properties": {"n": {"type": "string", "format": "int64"}}}
    spec = ServiceSpec(
        "f",
        Stamps,
        "sha256:t",
        {"check": FunctionSpec("check", "check", Stamp, Stamp, schema, schema, 30)},
        auth="off",
    )
    with pytest.raises(UncheckedFormat, match="int64"):
        Dispatcher(spec, 1)
