"""The same callId many times at once runs the handler once and gets identical answers."""

from __future__ import annotations

import asyncio
import json
import uuid

from dormant import Client
from dormant.callid import CallId
from dormant.transport import NativeTransport

from .ledger import Ledger


async def test_ten_clients_one_call_id_one_run(ledger: Ledger) -> None:
    await ledger.setup(replicas=2)
    ledger.start_pod("pod-1")
    ledger.start_pod("pod-2")
    await ledger.mesh.wait_serving("ledger-service")
    clients = [Client(ledger.mesh.broker_url, timeout=20) for _ in range(10)]
    for client in clients:
        await client.connect()
    try:
        answers = await asyncio.gather(
            *(
                c.call("ledger-service", "record", {"item": "storm", "ms": 300}, call_id="storm-1")
                for c in clients
            )
        )
    finally:
        for client in clients:
            await client.close()
    assert len(answers) == 10 and all(a == answers[0] for a in answers)
    assert ledger.runs()["storm-1"] == 1
    assert (await ledger.effects())["storm-1"] == 1


async def test_ten_raw_publishes_one_call_id_one_run(ledger: Ledger) -> None:
    await ledger.setup(replicas=2)
    ledger.start_pod("pod-1")
    ledger.start_pod("pod-2")
    await ledger.mesh.wait_serving("ledger-service")
    port = ledger.mesh.broker_url.rsplit(":", 1)[1]
    inbox = f"reply/storm-{uuid.uuid4().hex[:8]}"
    async with NativeTransport(ledger.mesh.broker_url) as listener:
        await listener.subscribe([inbox])
        publishers = [
            await asyncio.create_subprocess_exec(
                "mosquitto_pub", "-V", "5", "-p", port, "-q", "1",
                "-t", "service/ledger-service/record",
                "-D", "publish", "correlation-data", "storm-2",
                "-D", "publish", "response-topic", inbox,
                "-m", json.dumps({"item": "raw", "ms": 300}),
            )
            for _ in range(10)
        ]  # fmt: skip
        assert [await p.wait() for p in publishers] == [0] * 10
        replies = []
        messages = listener.messages()
        for _ in range(10):
            replies.append(await asyncio.wait_for(anext(messages), 20))
    assert {r.payload for r in replies} == {replies[0].payload}
    assert all(r.correlation == b"storm-2" and dict(r.user_properties)["status"] == "ok" for r in replies)
    assert json.loads(replies[0].payload)["item"] == "raw"
    assert ledger.runs()["storm-2"] == 1
    assert (await ledger.effects())["storm-2"] == 1


async def test_a_repeat_after_the_answer_is_served_from_the_store(ledger: Ledger) -> None:
    await ledger.setup(replicas=1)
    ledger.start_pod("pod-1")
    await ledger.mesh.wait_serving("ledger-service")
    async with Client(ledger.mesh.broker_url, timeout=10) as client:
        first = await client.call("ledger-service", "record", {"item": "once"}, call_id="again-1")
        second = await client.call("ledger-service", "record", {"item": "once"}, call_id="again-1")
        other = await client.call("ledger-service", "record", {"item": "once"}, call_id="again-2")
    assert first == second and other["item"] == "once"
    assert ledger.runs()["again-1"] == 1 and ledger.runs()["again-2"] == 1
    effects = await ledger.effects()
    assert effects["again-1"] == 1 and effects["again-2"] == 1


async def test_validation_errors_are_stored_but_crashes_may_be_retried(ledger: Ledger) -> None:
    await ledger.setup(replicas=1)
    ledger.start_pod("pod-1")
    await ledger.mesh.wait_serving("ledger-service")
    async with Client(ledger.mesh.broker_url, timeout=10) as client:
        for _ in range(2):
            try:
                await client.call("ledger-service", "record", {"item": 5}, call_id="bad-1")
            except Exception as exc:
                assert type(exc).__name__ == "ValidationError"
    assert CallId(b"bad-1").text == "bad-1"
    assert ledger.runs()["bad-1"] == 0  # invalid input never reaches the handler
