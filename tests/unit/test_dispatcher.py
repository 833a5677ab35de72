"""The runtime dispatcher: validation, handler errors, timeouts and deadlines, on a hand-built spec."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
from pydantic import BaseModel

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
