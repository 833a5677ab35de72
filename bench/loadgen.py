"""The load generator every responder is measured with, in its own process; prints one JSON line.

    python bench/loadgen.py latency    BROKER_URL TOPIC N             [--tokens same|fresh --key KEY.pem]
    python bench/loadgen.py throughput BROKER_URL TOPIC N IN_FLIGHT   [--tokens same|fresh --key KEY.pem]
    python bench/loadgen.py sdk        BROKER_URL SERVICE FUNCTION N   (latency through dormant.Client;
                                                                       traced when OTEL_* configure it)

Requests are MQTT 5, QoS 1, with a Response Topic and Correlation Data, payload {"text": "hello"}.
With ``--tokens`` every request carries ``authorization: Bearer <token>`` signed with the key in
``--key`` (``bench/issuer.py``): ``same`` sends one token on every call (after the first, the runtime's
verified-token cache answers), ``fresh`` a new token on every call (a full RS256 verification each time).
All tokens are signed before the clock starts. Every answer is compared with the first warm-up answer,
and an authenticated run refuses to start unless that answer is the echo (not an error), so a figure
can never be the speed of a refusal.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from issuer import BenchIssuer

from dormant import Client, mqtt
from dormant.config import parse_broker_url
from dormant.mqtt import Message
from dormant.wire import PROP_AUTHORIZATION

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

    async def call(self, topic: str, token: str | None = None) -> bytes:
        assert self.conn is not None
        correlation = f"c{next(self.ids)}-{uuid.uuid4().hex[:8]}".encode()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[correlation] = future
        properties = () if token is None else ((PROP_AUTHORIZATION, f"Bearer {token}"),)
        reason = await self.conn.publish(
            Message(
                topic,
                PAYLOAD,
                qos=1,
                response_topic=self.inbox,
                correlation=correlation,
                user_properties=properties,
            )
        )
        if reason == NO_MATCHING_SUBSCRIBERS:
            self.pending.pop(correlation, None)
            raise LookupError(f"nothing subscribes to {topic}")
        return await asyncio.wait_for(future, 10)


def token_stream(mode: str | None, key_file: Path | None, calls: int) -> Iterator[str | None]:
    """The token of each of ``calls`` calls, all signed now (before any timing): none, one repeated,
    or ``calls`` distinct ones."""
    if mode is None:
        return itertools.repeat(None)
    if key_file is None:
        raise SystemExit("--tokens needs --key")
    issuer = BenchIssuer.load(key_file)
    if mode == "same":
        return itertools.repeat(issuer.token())
    return iter(issuer.tokens(calls))


async def _warm_up(
    requester: Requester, topic: str, tokens: Iterator[str | None], authenticated: bool
) -> bytes:
    """Runs the warm-up calls; the last answer, which every timed answer must equal."""
    answer = b""
    for _ in range(WARM_UP):
        answer = await requester.call(topic, next(tokens))
    if authenticated and json.loads(answer) != json.loads(PAYLOAD):
        raise SystemExit(f"the authenticated call was not answered with the echo: {answer[:300]!r}")
    return answer


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50, p99 and mean in milliseconds of samples in seconds (p99: the sample at rank n*0.99)."""
    ordered = sorted(samples_s)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 4),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 4),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 4),
        "n": len(ordered),
    }


async def latency(
    url: str, topic: str, n: int, tokens: Iterator[str | None], authenticated: bool
) -> dict[str, Any]:
    requester = Requester()
    await requester.start(url)
    expected = await _warm_up(requester, topic, tokens, authenticated)
    samples = []
    mismatched = 0
    for _ in range(n):
        token = next(tokens)
        start = time.perf_counter()
        answer = await requester.call(topic, token)
        samples.append(time.perf_counter() - start)
        mismatched += answer != expected
    result: dict[str, Any] = percentiles(samples)
    result["mismatched"] = mismatched
    result["samples_ms"] = [round(x * 1000, 4) for x in samples]
    return result


async def throughput(
    url: str, topic: str, n: int, in_flight: int, tokens: Iterator[str | None], authenticated: bool
) -> dict[str, Any]:
    requester = Requester()
    await requester.start(url)
    expected = await _warm_up(requester, topic, tokens, authenticated)
    slots = asyncio.Semaphore(in_flight)
    mismatched = 0

    async def one(token: str | None) -> None:
        nonlocal mismatched
        async with slots:
            mismatched += await requester.call(topic, token) != expected

    start = time.perf_counter()
    await asyncio.gather(*(one(next(tokens)) for _ in range(n)))
    elapsed = time.perf_counter() - start
    return {"calls_per_s": round(n / elapsed, 1), "n": n, "in_flight": in_flight, "mismatched": mismatched}


async def sdk(url: str, service: str, function: str, n: int) -> dict[str, Any]:
    async with Client(url, timeout=10) as client:
        for _ in range(WARM_UP):
            await client.call(service, function, {"text": "hello"})
        samples = []
        for _ in range(n):
            start = time.perf_counter()
            await client.call(service, function, {"text": "hello"})
            samples.append(time.perf_counter() - start)
    result: dict[str, Any] = percentiles(samples)
    result["samples_ms"] = [round(x * 1000, 4) for x in samples]
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench/loadgen.py")
    parser.add_argument("mode", choices=["latency", "throughput", "sdk"])
    parser.add_argument("url")
    parser.add_argument("rest", nargs="+")
    parser.add_argument("--tokens", choices=["same", "fresh"])
    parser.add_argument("--key", type=Path)
    args = parser.parse_args(argv)
    rest, authenticated = args.rest, args.tokens is not None
    result: dict[str, Any]
    if args.mode == "latency":
        n = int(rest[1])
        tokens = token_stream(args.tokens, args.key, WARM_UP + n)
        result = asyncio.run(latency(args.url, rest[0], n, tokens, authenticated))
    elif args.mode == "throughput":
        n = int(rest[1])
        tokens = token_stream(args.tokens, args.key, WARM_UP + n)
        result = asyncio.run(throughput(args.url, rest[0], n, int(rest[2]), tokens, authenticated))
    else:
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):  # the SDK client traces (bench/run.py, tracing)
            from dormant_telemetry.tracing import configure_tracing

            configure_tracing("bench-loadgen")
        result = asyncio.run(sdk(args.url, rest[0], rest[1], int(rest[2])))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
