"""``dormant.Messaging`` on a real Mosquitto: a handler's calls carry its caller's token and derived
callIds (so a re-run parent is answered from the callee's de-duplication), typed errors come back as
they were raised, ``Unavailable`` is retried and a breaker opens, events and one-way calls arrive with
the sender's identity, and a binary transfer is reassembled (or refused when a chunk is corrupt).

The callee is a small responder built from the SDK's own wire module on a ``NativeTransport``; it
de-duplicates by callId with a dict, as the runtime does with its Postgres store (tested elsewhere).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from dormant import wire
from dormant.callid import child_call_id
from dormant.client import Client
from dormant.context import UserContext
from dormant.errors import (
    BusinessLogicError,
    DormantError,
    NotFound,
    TimeoutError,
    Unavailable,
    ValidationError,
)
from dormant.messaging import Event, Messaging, Resiliency, ResiliencyPolicy, binary_chunks
from dormant.transport import Message, NativeTransport
from dormant_local import MosquittoProcess

ALICE = UserContext(user_id="alice", email="alice@example.com", roles=("user",), token="tok-alice")
FAST = ResiliencyPolicy(max_retries=3, initial_backoff_s=0.01, max_backoff_s=0.05, timeout_s=10)

Handler = Callable[[wire.Call], Awaitable[Any]]


class Responder:
    """Serves ``service/{svc}/+``: runs ``handlers[function](call)`` once per callId (a repeat gets the
    stored answer) and records every request it received."""

    def __init__(self, url: str, service: str, handlers: dict[str, Handler]) -> None:
        self.service = service
        self.handlers = handlers
        self.requests: list[wire.Call] = []
        self.effects: list[tuple[str, Any]] = []
        self.answers: dict[str, tuple[bool, Any]] = {}
        self.arrived = asyncio.Event()
        self._transport = NativeTransport(url)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Responder:
        await self._transport.connect()
        await self._transport.subscribe([f"service/{self.service}/+"], qos=1)
        self._task = asyncio.create_task(self._serve())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._transport.close()

    async def _serve(self) -> None:
        async for message in self._transport.messages():
            call = wire.decode_call(
                message.topic,
                message.payload,
                response_topic=message.response_topic,
                correlation=message.correlation,
                user_properties=message.user_properties,
                expiry_s=message.expiry_s,
            )
            self.requests.append(call)
            self.arrived.set()
            answer = self.answers.get(call.call_id)
            if answer is None or (not answer[0] and _retryable(answer[1])):
                try:
                    answer = (True, await self.handlers[call.function](call))
                    self.answers[call.call_id] = answer
                except DormantError as exc:
                    answer = (False, exc.to_payload())
                    if not _retryable(answer[1]):
                        self.answers[call.call_id] = answer
            if call.reply_to:
                payload, props = wire.encode_response(call, *answer)
                await self._transport.publish(
                    Message(call.reply_to, payload, correlation=call.correlation, user_properties=props)
                )


def _retryable(error: Any) -> bool:
    return isinstance(error, dict) and error.get("type") in ("Unavailable", "TimeoutError")


@pytest_asyncio.fixture
async def client(broker: MosquittoProcess) -> AsyncIterator[Client]:
    async with Client(broker.url, timeout=10) as shared:
        yield shared


def service_name() -> str:
    return f"msg-{uuid.uuid4().hex[:8]}"


async def test_a_call_carries_the_caller_identity_and_a_child_call_id(client: Client) -> None:
    svc = service_name()

    async def whoami(call: wire.Call) -> Any:
        return {"authorization": call.headers.get("authorization"), "callId": call.call_id}

    async with Responder(client.broker_url, svc, {"whoami": whoami}):
        as_alice = Messaging(client, ALICE, "parent-a", resiliency=Resiliency(default=FAST))
        answer = await as_alice.call(f"{svc}.whoami", {}, headers={"x-tenant": "t1"})
        assert answer == {
            "authorization": "Bearer tok-alice",
            "callId": child_call_id("parent-a", f"{svc}.whoami", 1),
        }
        anonymous = Messaging(client, UserContext(), "parent-b")
        assert (await anonymous.call(f"{svc}.whoami", {}))["authorization"] is None


async def test_a_rerun_parent_does_not_double_the_child_effect(client: Client) -> None:
    svc = service_name()
    resiliency = Resiliency(default=FAST)

    async def charge(call: wire.Call) -> Any:
        responder.effects.append((call.call_id, call.params["amount"]))
        return {"charged": call.params["amount"], "n": len(responder.effects)}

    async with Responder(client.broker_url, svc, {"charge": charge}) as responder:

        async def parent_run() -> list[Any]:
            # A handler: one Messaging per run of the parent call, bound to the parent's callId.
            messaging = Messaging(client, ALICE, "order-42", resiliency=resiliency)
            return [
                await messaging.call(f"{svc}.charge", {"amount": 5}),
                await messaging.call(f"{svc}.charge", {"amount": 7}),
            ]

        first = await parent_run()
        again = await parent_run()  # the parent crashed after its calls and is run again
    assert first == again == [{"charged": 5, "n": 1}, {"charged": 7, "n": 2}]
    assert [amount for _, amount in responder.effects] == [5, 7]  # each effect once
    assert len(responder.requests) == 4
    assert len({call.call_id for call in responder.requests}) == 2


async def test_typed_errors_come_back_as_raised_and_are_not_retried(client: Client) -> None:
    svc = service_name()

    async def refuse(call: wire.Call) -> Any:
        raise BusinessLogicError("insufficient funds", {"balance": 3})

    async def missing(call: wire.Call) -> Any:
        raise NotFound("no such order")

    async with Responder(client.broker_url, svc, {"refuse": refuse, "missing": missing}) as responder:
        messaging = Messaging(client, ALICE, "p", resiliency=Resiliency(default=FAST))
        with pytest.raises(BusinessLogicError) as refused:
            await messaging.call(f"{svc}.refuse", {})
        assert refused.value.message == "insufficient funds" and refused.value.details == {"balance": 3}
        with pytest.raises(NotFound, match="no such order"):
            await messaging.call(f"{svc}.missing", {})
    assert len(responder.requests) == 2


async def test_unavailable_is_retried_with_the_same_call_id_then_succeeds(client: Client) -> None:
    svc = service_name()
    failures = 2

    async def flaky(call: wire.Call) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise Unavailable("warming up")
        return {"ok": True}

    async with Responder(client.broker_url, svc, {"flaky": flaky}) as responder:
        messaging = Messaging(client, ALICE, "p", resiliency=Resiliency(default=FAST))
        assert await messaging.call(f"{svc}.flaky", {}) == {"ok": True}
    assert len(responder.requests) == 3
    assert {call.call_id for call in responder.requests} == {child_call_id("p", f"{svc}.flaky", 1)}


async def test_the_breaker_opens_after_failures_and_refuses_at_once(client: Client) -> None:
    svc = service_name()

    async def down(call: wire.Call) -> Any:
        raise Unavailable("database down")

    policy = ResiliencyPolicy(max_retries=0, breaker_failures=3, breaker_reset_s=600, timeout_s=10)
    resiliency = Resiliency({svc: policy}, default=FAST)
    async with Responder(client.broker_url, svc, {"down": down}) as responder:
        for n in range(3):  # three parent calls, each with its own Messaging, one shared breaker
            with pytest.raises(Unavailable, match="database down"):
                await Messaging(client, ALICE, f"p{n}", resiliency=resiliency).call(f"{svc}.down", {})
        with pytest.raises(Unavailable, match="circuit open") as refused:
            await Messaging(client, ALICE, "p4", resiliency=resiliency).call(f"{svc}.down", {})
    assert refused.value.details["target"] == f"{svc}.down"
    assert len(responder.requests) == 3  # the refused call never reached the callee


async def test_one_way_send_reaches_the_function_with_identity(client: Client) -> None:
    svc = service_name()

    async def notify(call: wire.Call) -> Any:
        responder.effects.append((call.call_id, call.params))
        return None

    async with Responder(client.broker_url, svc, {"notify": notify}) as responder:
        messaging = Messaging(client, ALICE, "p", resiliency=Resiliency(default=FAST))
        call_id = await messaging.send(f"{svc}.notify", {"text": "hi"})
        await asyncio.wait_for(responder.arrived.wait(), 10)
    assert call_id == child_call_id("p", f"{svc}.notify", 1)
    (request,) = responder.requests
    assert request.call_id == call_id and request.reply_to is None
    assert request.headers["authorization"] == "Bearer tok-alice"
    assert responder.effects == [(call_id, {"text": "hi"})]


async def test_events_reach_subscribers_with_headers_and_the_sender_subject(client: Client) -> None:
    name = f"{service_name()}/user_created"
    sender = Messaging(client, ALICE, "create-1")
    receiver = Messaging(client, UserContext(), "listener")
    received: list[Event] = []
    got_one = asyncio.Event()

    async def on_event(event: Event) -> None:
        received.append(event)
        got_one.set()

    async with await receiver.subscribe(name) as events, await receiver.subscribe(name, on_event):
        event_id = await sender.send(name, {"userId": "u1"}, headers={"x-source": "signup"})
        event = await events.receive(timeout=10)
        await asyncio.wait_for(got_one.wait(), 10)
    assert event == received[0]
    assert event.name == name and event.body == {"userId": "u1"}
    assert event.user_id == "alice" and event.event_id == event_id
    assert event.headers == {"x-source": "signup", "causation-id": "create-1"}
    assert all("tok-alice" not in value for value in event.headers.values())  # the subject, never the token


async def test_receive_takes_the_next_event(client: Client) -> None:
    name = f"{service_name()}/ping"
    messaging = Messaging(client, ALICE, "p")
    waiting = asyncio.create_task(messaging.receive(name, timeout=10))
    # receive() subscribes when it starts: publish until it has.
    while not waiting.done():
        await messaging.send(name, {"n": 1})
        await asyncio.wait([waiting], timeout=0.05)
    assert (await waiting).body == {"n": 1}
    with pytest.raises(TimeoutError):
        await messaging.receive(name, timeout=0.05)


async def test_a_binary_transfer_round_trips_in_chunks(client: Client) -> None:
    name = f"{service_name()}/avatar"
    data = os.urandom(200 * 1024)
    receiver = Messaging(client, UserContext(), "listener")
    sender = Messaging(client, ALICE, "upload-1")
    async with await receiver.binary_inbox(name) as inbox:
        transfer_id = await sender.send_binary(name, data, chunk_size=4096, headers={"x-kind": "png"})
        transfer = await inbox.receive_transfer(timeout=20)
    assert transfer.data == data and transfer.transfer_id == transfer_id
    assert transfer.user_id == "alice" and transfer.headers["x-kind"] == "png"
    with pytest.raises(Unavailable, match="nobody receives"):
        await sender.send_binary(name, b"late", chunk_size=4096)


async def test_a_corrupt_or_missing_chunk_is_refused(client: Client) -> None:
    name = f"{service_name()}/blob"
    topic = wire.binary_topic(name)
    data = os.urandom(64 * 1024)
    receiver = Messaging(client, UserContext(), "listener")
    chunks = binary_chunks("t-corrupt", data, 4096)
    payload, props = chunks[5]
    chunks[5] = (payload[:-1] + bytes([payload[-1] ^ 1]), props)
    async with await receiver.binary_inbox(name) as inbox:
        for payload, props in chunks:
            await client.publish(topic, payload, user_properties=props)
        with pytest.raises(ValidationError, match="chunk 5 of transfer t-corrupt is corrupt"):
            await inbox.receive(timeout=10)
    async with await receiver.binary_inbox(name) as inbox:
        for payload, props in binary_chunks("t-missing", data, 4096)[1:]:
            await client.publish(topic, payload, user_properties=props)
        with pytest.raises(TimeoutError) as missing:
            await inbox.receive(timeout=1)
    assert missing.value.details["missing"] == [0]
