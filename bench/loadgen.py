"""The load generator every responder is measured with, in its own process; prints one JSON line.

    python bench/loadgen.py latency    BROKER_URL TOPIC N
    python bench/loadgen.py throughput BROKER_URL TOPIC N IN_FLIGHT
    python bench/loadgen.py sdk        BROKER_URL SERVICE FUNCTION N   (latency through dormant.Client)

Requests are MQTT 5, QoS 1, with a Response Topic and Correlation Data, payload {"text": "hello"}.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import sys
import time
import uuid
from typing import Any

from dormant import Client, mqtt
from dormant.config import parse_broker_url
from dormant.mqtt import Message

PAYLOAD = b'{"text": "hello"}'
WARM_UP = 200
NO_MATCHING_SUBSCRIBERS = 0x10


class Requester:
    def __init__(self) -> None:
        self.inbox = f"reply/bench-{uuid.uuid4().hex[:8]}"
        self.pending: dict[bytes, asyncio.Future[bytes]] = {}
        self.ids = itertools.count()
        self.conn: mqtt.MqttConnection | None = None

    def _on_message(self, message: mqtt.Message) -> None:
        future = self.pending.pop(message.correlation or b"", None)
        if future is not None and not future.done():
            future.set_result(message.payload)

    async def start(self, url: str) -> None:
        address = parse_broker_url(url)
        self.conn = await mqtt.connect(
            address.host, address.port, client_id=self.inbox.replace("/", "-"), on_message=self._on_message
        )
        await self.conn.subscribe([self.inbox])

    async def call(self, topic: str) -> bytes:
        assert self.conn is not None
        correlation = f"c{next(self.ids)}-{uuid.uuid4().hex[:8]}".encode()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[correlation] = future
        reason = await self.conn.publish(
            Message(topic, PAYLOAD, qos=1, response_topic=self.inbox, correlation=correlation)
        )
        if reason == NO_MATCHING_SUBSCRIBERS:
            self.pending.pop(correlation, None)
            raise LookupError(f"nothing subscribes to {topic}")
        return await asyncio.wait_for(future, 10)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 4),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 4),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 4),
        "n": len(ordered),
    }


async def latency(url: str, topic: str, n: int) -> dict[str, Any]:
    requester = Requester()
    await requester.start(url)
    for _ in range(WARM_UP):
        await requester.call(topic)
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await requester.call(topic)
        samples.append(time.perf_counter() - start)
    result: dict[str, Any] = _percentiles(samples)
    result["samples_ms"] = [round(x * 1000, 4) for x in samples]
    return result


async def throughput(url: str, topic: str, n: int, in_flight: int) -> dict[str, float]:
    requester = Requester()
    await requester.start(url)
    for _ in range(WARM_UP):
        await requester.call(topic)
    slots = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with slots:
            await requester.call(topic)

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    elapsed = time.perf_counter() - start
    return {"calls_per_s": round(n / elapsed, 1), "n": n, "in_flight": in_flight}


async def sdk(url: str, service: str, function: str, n: int) -> dict[str, Any]:
    async with Client(url, timeout=10) as client:
        for _ in range(WARM_UP):
            await client.call(service, function, {"text": "hello"})
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            await client.call(service, function, {"text": "hello"})
            samples.append(time.perf_counter() - start)
    result: dict[str, Any] = _percentiles(samples)
    result["samples_ms"] = [round(x * 1000, 4) for x in samples]
    return result


def main(argv: list[str]) -> None:
    mode, url = argv[0], argv[1]
    result: dict[str, Any]
    if mode == "latency":
        result = asyncio.run(latency(url, argv[2], int(argv[3])))
    elif mode == "throughput":
        result = asyncio.run(throughput(url, argv[2], int(argv[3]), int(argv[4])))
    elif mode == "sdk":
        result = asyncio.run(sdk(url, argv[2], argv[3], int(argv[4])))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
