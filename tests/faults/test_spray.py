"""A client sprays bad properties at a live runtime while well-formed calls keep going (issue 9, items 6-8).

For a few seconds, about 200 bad requests a second: wildcard and service-topic Response Topics and
envelope ``replyTo``s, overflowing and malformed ``deadline``s, huge Correlation Data and envelope
callIds, bad envelopes, and properties that are not UTF-8 (sent raw, past any client-side check; the
broker drops that sender). Meanwhile well-formed calls run. Asserted: the runtime never restarts (the
same pid answers before and after), no well-formed call fails, no answer is ever published into a
service topic, the broker log (connection messages on) shows no disconnect of a runtime, and the
runtime did see and refuse the bad requests. The p99 of well-formed calls with and without the spray is
printed, not asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from e2e.mesh import PROBE, Mesh, running_mesh

from dormant import Client
from dormant.mqtt import codec
from dormant.transport import Message, NativeTransport
from dormant_local import MosquittoProcess
from dormant_local import broker as broker_module

SERVICE = "probe-service"
SPRAY_RATE = 200  # bad requests a second
SPRAY_S = 4.0
BASELINE_S = 3.0
GOOD_WORKERS = 4
RUNTIME_ID = f"dormant-{SERVICE}-"

BAD_RESPONSE_TOPICS = [
    "service/probe-service/echo",
    "service/probe-service/v1/echo",
    "service/probe-service",
    "mesh/routes/probe-service",
    "reply//x",
    "reply/x/",
    "reply",
    "elsewhere/x",
]
WILDCARD_TOPICS = ["reply/+/x", "reply/#", "reply/a/+"]


def _envelope(**fields: Any) -> bytes:
    body = {"body": {"function": "echo", "parameters": {"text": "spray"}}, **fields}
    return orjson.dumps(body)


def _bad_requests() -> list[tuple[str, codec.Message, bool]]:
    """(kind, PUBLISH, raw_only): ``raw_only`` ones make the broker drop the sender (own connection)."""
    echo = f"service/{SERVICE}/echo"
    env = f"service/{SERVICE}"
    good = orjson.dumps({"text": "spray"})
    out: list[tuple[str, codec.Message, bool]] = []
    for topic in BAD_RESPONSE_TOPICS:
        out.append(("service-topic reply", codec.Message(echo, good, response_topic=topic), False))
        out.append(("envelope replyTo", codec.Message(env, _envelope(replyTo=topic)), False))
    for topic in WILDCARD_TOPICS:
        out.append(("envelope wildcard replyTo", codec.Message(env, _envelope(replyTo=topic)), False))
        out.append(("wildcard Response Topic", codec.Message(echo, good, response_topic=topic), True))
    reply = f"reply/spray-{uuid.uuid4().hex[:6]}"
    for deadline in ["1" + "0" * 400, "-1", "1e3", "\uff11\uff12", "9" * 40]:
        props = [("deadline", deadline)]
        out.append(
            ("bad deadline", codec.Message(echo, good, response_topic=reply, user_properties=props), False)
        )
    out.append(
        ("huge correlation", codec.Message(echo, good, response_topic=reply, correlation=b"c" * 60000), False)
    )
    out.append(
        ("huge envelope callId", codec.Message(env, _envelope(callId="x" * 5000, replyTo=reply)), False)
    )
    out.append(("long replyTo", codec.Message(env, _envelope(replyTo="reply/" + "y" * 5000)), False))
    for payload in [
        b"{nope",
        b"[]",
        b'{"body": 1}',
        b'{"callId": 5, "body": {"function": "echo"}}',
        b"\xff\xfe",
    ]:
        out.append(("bad envelope", codec.Message(env, payload, response_topic=reply), False))
    out.append(("non-UTF-8 property", _non_utf8(echo, good, reply), True))
    return out


def _non_utf8(topic: str, payload: bytes, reply: str) -> codec.Message:
    """A marker: encoded specially by ``_encode`` with invalid UTF-8 in a user property."""
    return codec.Message(topic, payload, response_topic=reply, user_properties=[("x-bin", "\x01MARK")])


def _encode(message: codec.Message) -> bytes:
    data = codec.encode_publish(dataclasses.replace(message, qos=0))  # the sprayer writes QoS 0
    if message.user_properties == [("x-bin", "\x01MARK")]:
        data = data.replace(b"\x01MARK", b"\xff\xfeRK")  # same length: framing stays valid
    return data


class RawSprayer:
    """Writes PUBLISH packets (QoS 0) as they are, past the client-side checks of ``dormant.mqtt``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent = 0
        self.reconnects = 0
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._ids = itertools.count()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client_id = f"sprayer-{uuid.uuid4().hex[:8]}-{next(self._ids)}"
        writer.write(
            codec.encode_connect(
                client_id, keepalive=30, clean_start=True, session_expiry_s=0, receive_maximum=10
            )
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readexactly(2), 10)
        assert head[0] >> 4 == codec.PacketType.CONNACK
        await reader.readexactly(head[1])
        return reader, writer

    async def send(self, message: codec.Message, *, own_connection: bool) -> None:
        if own_connection:  # the broker closes this one: never reuse it
            reader, writer = await self._connect()
            writer.write(_encode(message))
            with contextlib.suppress(ConnectionError):
                await writer.drain()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.read(), 5)  # until the broker closes it
            writer.close()
            self.sent += 1
            return
        if self._writer is None or self._writer.is_closing() or (self._reader and self._reader.at_eof()):
            if self._writer is not None:
                self.reconnects += 1
                self._writer.close()
            self._reader, self._writer = await self._connect()
        self._writer.write(_encode(message))
        await self._writer.drain()
        self.sent += 1

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.write(codec.DISCONNECT)
            with contextlib.suppress(ConnectionError):
                await self._writer.drain()
            self._writer.close()


class Monitor:
    """Subscribes to every service topic; an answer (a ``status`` property) there is a leak."""

    def __init__(self, url: str) -> None:
        self.transport = NativeTransport(url)
        self.leaks: list[Message] = []
        self.seen = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.transport.connect()
        await self.transport.subscribe(["service/#", "mesh/routes/#"], qos=0)
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.transport.messages():
            self.seen += 1
            if any(key == "status" for key, _ in message.user_properties):
                self.leaks.append(message)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.transport.close()


@pytest_asyncio.fixture
async def logging_broker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MosquittoProcess]:
    """A broker of its own that logs every connect and disconnect (the shared one does not)."""
    render = broker_module.render_config

    def with_connection_messages(**kwargs: Any) -> str:
        config = render(**kwargs)
        assert "connection_messages false" in config
        return config.replace("connection_messages false", "connection_messages true")

    monkeypatch.setattr(broker_module, "render_config", with_connection_messages)
    process = MosquittoProcess(data_dir=tmp_path / "broker")
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


async def _good_calls(
    url: str, until: float, latencies: list[float], failures: list[str], pids: set[int]
) -> None:
    async with Client(url, timeout=15) as client:
        n = 0
        while time.monotonic() < until:
            n += 1
            text = f"good-{n}"
            start = time.perf_counter()
            try:
                answer = await client.call(SERVICE, "echo", {"text": text})
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append(time.perf_counter() - start)
            if answer.get("text") != text:
                failures.append(f"wrong answer {answer!r}")
            pids.add(int(answer["pid"]))


async def _run_good(url: str, seconds: float) -> tuple[list[float], list[str], set[int]]:
    latencies: list[float] = []
    failures: list[str] = []
    pids: set[int] = set()
    until = time.monotonic() + seconds
    await asyncio.gather(*(_good_calls(url, until, latencies, failures, pids) for _ in range(GOOD_WORKERS)))
    return latencies, failures, pids


def _p99_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2)


async def _spray(sprayer: RawSprayer, seconds: float) -> dict[str, int]:
    bad = _bad_requests()
    kinds: dict[str, int] = {}
    interval = 0.05
    per_tick = max(1, int(SPRAY_RATE * interval))
    loop = asyncio.get_running_loop()
    start = loop.time()
    cycle = itertools.cycle(bad)
    tick = 0
    raw_only_pending: list[asyncio.Task[None]] = []
    while loop.time() - start < seconds:
        for _ in range(per_tick):
            kind, message, raw_only = next(cycle)
            kinds[kind] = kinds.get(kind, 0) + 1
            if raw_only:
                raw_only_pending.append(asyncio.create_task(sprayer.send(message, own_connection=True)))
            else:
                await sprayer.send(message, own_connection=False)
        tick += 1
        # Pace to the rate (a schedule, not a wait for anything to happen).
        await asyncio.sleep(max(0.0, start + tick * interval - loop.time()))
    await asyncio.gather(*raw_only_pending)
    return kinds


@pytest.mark.slow
async def test_a_bad_input_spray_hurts_no_runtime_and_no_call(
    logging_broker: MosquittoProcess, pg: Any, tmp_path: Path
) -> None:
    name = f"dormant_spray_{uuid.uuid4().hex[:8]}"
    catalog_url = await pg.create_database(name)
    try:
        with running_mesh(logging_broker.url, catalog_url, tmp_path) as mesh:
            await _exercise(mesh, logging_broker)
    finally:
        await pg.drop_database(name)


async def _exercise(mesh: Mesh, broker: MosquittoProcess) -> None:
    service, version = await mesh.publish(PROBE)
    await mesh.deploy(service, version, replicas=1)
    pod = mesh.start_pod("pod-spray")
    await mesh.wait_serving(service)
    monitor = Monitor(mesh.broker_url)
    await monitor.start()
    sprayer = RawSprayer(broker.port)
    try:
        base_lat, base_fail, base_pids = await _run_good(mesh.broker_url, BASELINE_S)
        assert not base_fail and len(base_pids) == 1, (base_fail, base_pids)
        log_mark = broker.log_file.stat().st_size

        good, kinds = await asyncio.gather(_run_good(mesh.broker_url, SPRAY_S), _spray(sprayer, SPRAY_S))
        spray_lat, spray_fail, spray_pids = good
        after_lat, after_fail, after_pids = await _run_good(mesh.broker_url, 0.5)
    finally:
        await sprayer.close()
        await monitor.close()

    print(
        f"\nspray: {sprayer.sent} bad requests in {SPRAY_S:g}s ({sprayer.sent / SPRAY_S:.0f}/s)"
        f" by kind {kinds}\n"
        f"well-formed p99: {_p99_ms(base_lat)} ms without the spray ({len(base_lat)} calls), "
        f"{_p99_ms(spray_lat)} ms during it ({len(spray_lat)} calls)"
    )
    assert sprayer.sent >= SPRAY_RATE * SPRAY_S * 0.5
    assert spray_fail == [] and after_fail == []  # no well-formed call failed
    assert spray_lat and after_lat
    assert base_pids == spray_pids == after_pids  # one runtime process answered throughout: no restart
    assert pod.poll() is None
    pod_log = mesh.pod_log("pod-spray")
    assert "restarting it" not in pod_log and "Traceback" not in pod_log
    assert pod_log.count("refused reply topic") >= 10  # the bad reply topics did reach the runtime
    assert "deadline user property" in pod_log and "callId is at most" in pod_log
    assert monitor.leaks == [], [m.topic for m in monitor.leaks]  # no answer into any service topic
    assert monitor.seen > 0

    broker_log = broker.log_file.read_text(errors="replace")[log_mark:]
    runtime_lines = [line for line in broker_log.splitlines() if RUNTIME_ID in line]
    disconnects = [
        line
        for line in runtime_lines
        if "disconnect" in line.lower() or "closed its connection" in line or "error" in line.lower()
    ]
    assert disconnects == []
    # The log does record disconnects: the senders of non-UTF-8 properties were dropped by the broker.
    assert "sprayer-" in broker_log and "disconnect" in broker_log.lower()
