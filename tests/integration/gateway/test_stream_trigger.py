"""Stream triggers on a private nats-server with JetStream (``dormant_local.NatsServer``), a real gateway
and the probe service on real pods.

1,000 messages, 5 % failing, with the gateway killed (SIGKILL) in the middle and a new one started:
every good message runs the handler exactly once, every bad one is in the dead-letter subject. And the
settings that shape consumption: ``startPosition`` (latest skips what came before the trigger, start
does not), ``batchSize`` (how many messages are in flight) and ``batchWindowMs`` (a batch waits to fill).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import orjson
import pytest
import pytest_asyncio
from gw_helpers import GatewayProcess, new_gateway, wait_for
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo

from dormant import Client
from dormant_gateway.workers.stream import durable_name
from dormant_local import NatsServer

API = "/api/v1"
TOTAL = 1000


@pytest_asyncio.fixture(scope="module")
async def nats_server(gw_tmp: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(gw_tmp / "nats") as server:
        yield server


@pytest_asyncio.fixture(scope="module")
async def stream_gateway(
    gw_mesh: object, gw_tmp: Path, nats_server: NatsServer
) -> AsyncIterator[GatewayProcess]:
    process = new_gateway(gw_mesh, gw_tmp, "gw-stream", DORMANT_NATS_URL=nats_server.url)  # type: ignore[arg-type]
    try:
        await process.start()
        yield process
    finally:
        process.stop()


async def _stream(js: JetStreamContext, run: str) -> tuple[str, str]:
    """A stream of its own for one test: (stream name, the subject the trigger consumes)."""
    name = f"orders-{run}"
    await js.add_stream(name=name, subjects=[f"orders.{run}.>"])
    return name, f"orders.{run}.in"


async def _create(http: httpx.AsyncClient, function: str, config: dict[str, Any]) -> str:
    created = await http.post(
        f"{API}/functions/probe-service/triggers",
        json={"type": "stream", "function": function, "config": config},
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _consumer(js: JetStreamContext, stream: str, trigger_id: str) -> ConsumerInfo | None:
    try:
        return await js.consumer_info(stream, durable_name(trigger_id))
    except nats.js.errors.NotFoundError:
        return None


async def _drained(js: JetStreamContext, stream: str, trigger_id: str) -> bool:
    info = await _consumer(js, stream, trigger_id)
    return info is not None and info.num_pending == 0 and info.num_ack_pending == 0


async def _counts(broker_url: str, keys: list[str]) -> dict[str, int]:
    """How many times the probe's ``count`` ran for each key (its runtime's own tally, read with
    ``peek``), asked over MQTT with the SDK client (as the gateway would ask, without its HTTP layer:
    reading a thousand tallies through it took most of the big test's time)."""
    out: dict[str, int] = {}
    async with Client(broker_url, timeout=60) as client:
        for start in range(0, len(keys), 100):
            chunk = keys[start : start + 100]
            answers = await asyncio.gather(
                *(client.call("probe-service", "count", {"key": k, "peek": True}) for k in chunk)
            )
            for key, answer in zip(chunk, answers, strict=True):
                assert answer["key"] == key, answer
                out[key] = answer["count"]
    return out


@pytest.mark.timeout(400)  # 1,000 messages and a crash: minutes on a busy machine, never a hang
async def test_thousand_messages_five_percent_failing_across_a_gateway_crash(
    gw_mesh: object, gw_tmp: Path, nats_server: NatsServer
) -> None:
    run = uuid.uuid4().hex[:8]
    bad = {i for i in range(TOTAL) if i % 20 == 7}
    first = new_gateway(gw_mesh, gw_tmp, "gw-stream-a", DORMANT_NATS_URL=nats_server.url)  # type: ignore[arg-type]
    second = new_gateway(gw_mesh, gw_tmp, "gw-stream-b", DORMANT_NATS_URL=nats_server.url)  # type: ignore[arg-type]
    connection = await nats.connect(nats_server.url)
    try:
        js = connection.jetstream()
        stream, subject = await _stream(js, run)
        acks = []
        for index in range(TOTAL):  # without waiting for each ack in turn; every one is awaited below
            body = {"key": f"{run}-{index}", **({"fail": 1000} if index in bad else {})}
            acks.append(await js.publish_async(subject, orjson.dumps(body)))
        assert sorted(ack.seq for ack in await asyncio.gather(*acks)) == list(range(1, TOTAL + 1))
        await first.start()
        async with httpx.AsyncClient(base_url=first.url, headers=first.headers("developer")) as http:
            trigger_id = await _create(
                http,
                "count",
                {
                    "stream": stream,
                    "subject": subject,
                    "batchSize": 100,
                    "batchWindowMs": 20,
                    "startPosition": "start",
                    "maxAttempts": 3,
                    "backoffSeconds": 0.01,
                },
            )

            async def some_done() -> bool:
                info = await _consumer(js, stream, trigger_id)
                return info is not None and info.ack_floor.stream_seq >= 300

            await wait_for(some_done, timeout=60, interval=0.05)
        assert first.proc is not None
        first.proc.kill()  # a crash: in-flight messages stay unacknowledged, JetStream delivers them again
        first.proc.wait()
        partial = await _consumer(js, stream, trigger_id)
        assert partial is not None and partial.num_pending + partial.num_ack_pending > 0  # really mid-way

        await second.start()
        async with httpx.AsyncClient(base_url=second.url, headers=second.headers("developer")) as http:
            await wait_for(lambda: _drained(js, stream, trigger_id), timeout=90, interval=0.2)

            dead = await js.pull_subscribe(f"{subject}.dlq", stream=stream)
            letters = []
            while True:
                try:
                    letters += await dead.fetch(100, timeout=1)
                except TimeoutError:
                    break
            assert sorted(orjson.loads(m.data)["key"] for m in letters) == sorted(f"{run}-{i}" for i in bad)
            for letter in letters:
                assert letter.headers is not None
                assert letter.headers["x-dormant-error-type"] == "SystemError"
                assert letter.headers["x-dormant-trigger"] == trigger_id

            good = [f"{run}-{i}" for i in range(TOTAL) if i not in bad]
            counts = await _counts(second.broker_url, good)
            assert {k for k, c in counts.items() if c != 1} == set()  # each good one ran exactly once
            trigger = (await http.get(f"{API}/functions/probe-service/triggers/{trigger_id}")).json()
            # The batch in flight at the crash may have dead-lettered some whose metrics were not written.
            assert 0 < trigger["metrics"]["deadLettered"] <= len(bad)
            assert trigger["lastError"] is None
    finally:
        first.stop()
        second.stop()
        await connection.close()


async def test_start_position_latest_skips_earlier_messages_and_start_reads_them(
    stream_gateway: GatewayProcess, nats_server: NatsServer
) -> None:
    run = uuid.uuid4().hex[:8]
    connection = await nats.connect(nats_server.url)
    try:
        js = connection.jetstream()
        stream, subject = await _stream(js, run)
        for index in range(5):
            await js.publish(subject, orjson.dumps({"key": f"{run}-old-{index}"}))
        async with httpx.AsyncClient(
            base_url=stream_gateway.url, headers=stream_gateway.headers("developer")
        ) as http:
            base = {"stream": stream, "subject": subject, "batchWindowMs": 0}
            latest = await _create(http, "count", {**base, "startPosition": "latest"})
            for index in range(5):
                await js.publish(subject, orjson.dumps({"key": f"{run}-new-{index}"}))
            await wait_for(lambda: _drained(js, stream, latest), timeout=60, interval=0.1)
            info = await _consumer(js, stream, latest)
            assert info is not None and info.delivered.consumer_seq == 5  # only the five new ones
            old = [f"{run}-old-{i}" for i in range(5)]
            new = [f"{run}-new-{i}" for i in range(5)]
            assert await _counts(stream_gateway.broker_url, new) == dict.fromkeys(new, 1)
            assert await _counts(stream_gateway.broker_url, old) == dict.fromkeys(old, 0)

            # Another trigger on the same subject from the start: both old and new, once more each.
            start = await _create(http, "count", {**base, "startPosition": "start"})
            await wait_for(lambda: _drained(js, stream, start), timeout=60, interval=0.1)
            assert await _counts(stream_gateway.broker_url, old) == dict.fromkeys(old, 1)
            assert await _counts(stream_gateway.broker_url, new) == dict.fromkeys(new, 2)
    finally:
        await connection.close()


async def test_batch_size_bounds_the_messages_in_flight(
    stream_gateway: GatewayProcess, nats_server: NatsServer
) -> None:
    run = uuid.uuid4().hex[:8]
    connection = await nats.connect(nats_server.url)
    try:
        js = connection.jetstream()
        stream, subject = await _stream(js, run)
        for _ in range(8):
            await js.publish(subject, orjson.dumps({"ms": 1000}))
        async with httpx.AsyncClient(
            base_url=stream_gateway.url, headers=stream_gateway.headers("developer")
        ) as http:
            trigger_id = await _create(
                http,
                "sleep",
                {"stream": stream, "subject": subject, "startPosition": "start", "batchSize": 3},
            )
            seen: set[int] = set()

            async def done() -> bool:
                info = await _consumer(js, stream, trigger_id)
                if info is None:
                    return False
                seen.add(info.num_ack_pending)
                return info.num_pending == 0 and info.num_ack_pending == 0

            await wait_for(done, timeout=60, interval=0.02)
            assert max(seen) == 3  # three calls at a time (a second each): never more, and not fewer
            trigger = (await http.get(f"{API}/functions/probe-service/triggers/{trigger_id}")).json()
            assert trigger["metrics"]["succeeded"] == 8
    finally:
        await connection.close()


async def test_batch_window_waits_for_the_batch_to_fill(
    stream_gateway: GatewayProcess, nats_server: NatsServer
) -> None:
    run = uuid.uuid4().hex[:8]
    connection = await nats.connect(nats_server.url)
    try:
        js = connection.jetstream()
        stream, subject = await _stream(js, run)
        async with httpx.AsyncClient(
            base_url=stream_gateway.url, headers=stream_gateway.headers("developer")
        ) as http:
            trigger_id = await _create(
                http,
                "count",
                {"stream": stream, "subject": subject, "batchSize": 2, "batchWindowMs": 60_000},
            )
            await wait_for(lambda: _consumer(js, stream, trigger_id), timeout=30, interval=0.1)
            await js.publish(subject, orjson.dumps({"key": f"{run}-1"}))

            async def delivered() -> bool:
                info = await _consumer(js, stream, trigger_id)
                return info is not None and info.num_ack_pending == 1

            await wait_for(delivered, timeout=30, interval=0.05)
            await asyncio.sleep(1.0)
            # Taken, but not called: the batch waits (up to a minute) for a second message.
            assert await _counts(stream_gateway.broker_url, [f"{run}-1"]) == {f"{run}-1": 0}
            await js.publish(subject, orjson.dumps({"key": f"{run}-2"}))
            # The batch is full: both are called now, long before the window would have ended.
            await wait_for(lambda: _drained(js, stream, trigger_id), timeout=30, interval=0.1)
            both = await _counts(stream_gateway.broker_url, [f"{run}-1", f"{run}-2"])
            assert both == {f"{run}-1": 1, f"{run}-2": 1}
    finally:
        await connection.close()
