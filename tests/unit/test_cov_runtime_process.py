"""The runtime process around its server, in process: the control protocol's runtime end (events out,
commands in), the entry point's start-up and shut-down (``_main``, ``_serve``) with an in-memory broker,
and the per-version call statistics and their publisher."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from dormant import wire
from dormant._control import (
    CONTROL_FD_ENV,
    DRAINED,
    FAILED,
    READY,
    STANDBY,
    Command,
    Drain,
    Load,
    decode_event,
    encode_command,
)
from dormant.transport import Message, TransportError
from dormant_local import free_port
from dormant_runtime import __main__ as runtime_main
from dormant_runtime import server as server_module
from dormant_runtime import stats as stats_module
from dormant_runtime.control import EventChannel, read_commands
from dormant_runtime.stats import BOUNDS_MS, CallStats, StatsPublisher, mark_start

PROBE = Path(__file__).resolve().parents[1] / "fixtures" / "services" / "probe-service"


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not reached in time"
        await asyncio.sleep(0.005)


# ------------------------------------------------------------------------------------------ control


def test_the_event_channel_is_named_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CONTROL_FD_ENV, "7")
    assert EventChannel.from_env()._fd == 7
    monkeypatch.setenv(CONTROL_FD_ENV, "seven")
    assert EventChannel.from_env()._fd is None
    monkeypatch.delenv(CONTROL_FD_ENV)
    channel = EventChannel.from_env()
    channel.emit(READY, service="s", version=1)  # no sidecar: nothing to write to, and no error


def test_events_go_out_one_per_line_and_a_gone_sidecar_silences_them() -> None:
    read_fd, write_fd = os.pipe()
    try:
        channel = EventChannel(write_fd)
        channel.emit(STANDBY)
        channel.emit(FAILED, error="no such module")
        lines = os.read(read_fd, 4096).splitlines()
        events = [decode_event(line) for line in lines]
        assert [(e.kind, e.fields) for e in events if e is not None] == [
            (STANDBY, {}),
            (FAILED, {"error": "no such module"}),
        ]
    finally:
        os.close(read_fd)
    channel.emit(DRAINED, cut_off=0)  # the reading end is gone: EPIPE ...
    os.close(write_fd)
    channel.emit(DRAINED, cut_off=0)  # ... and from then on nothing is written at all
    assert channel._fd is None


async def test_commands_are_read_from_stdin_until_it_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    read_fd, write_fd = os.pipe()
    # The event loop's pipe transport owns (and closes) the reading end.
    monkeypatch.setattr(sys, "stdin", os.fdopen(read_fd, "rb", closefd=False))
    commands = await read_commands()
    load = Load(app_dir=Path("/layers/app"), service="svc", version=2, live=False, slot=1)
    os.write(write_fd, encode_command(load) + b"not a command\n" + b'{"cmd": "dance"}\n')
    os.write(write_fd, encode_command(Drain()))
    os.close(write_fd)
    received = [await asyncio.wait_for(commands.get(), 10) for _ in range(3)]
    assert received == [load, Drain(), None]


# ------------------------------------------------------------------------------------------ entry point


class Events:
    """Records what the runtime tells its sidecar."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, dict[str, Any]]] = []

    def emit(self, event: str, **fields: Any) -> None:
        self.emitted.append((event, fields))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.emitted]


class QuietTransport:
    """A broker connection that takes everything and delivers nothing until closed."""

    def __init__(self, broker_url: str, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.published: list[Message] = []
        self.closed = asyncio.Event()

    async def connect(self) -> None:
        pass

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        pass

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        pass

    async def publish(self, message: Message) -> int:
        self.published.append(message)
        return 0

    async def messages(self) -> AsyncIterator[Message]:
        await self.closed.wait()
        return
        yield  # an async generator

    async def close(self, *, end_session: bool = False) -> None:
        self.closed.set()


@pytest.fixture
def quiet_broker(monkeypatch: pytest.MonkeyPatch) -> list[QuietTransport]:
    made: list[QuietTransport] = []

    def new_transport(broker_url: str, **kwargs: Any) -> QuietTransport:
        made.append(QuietTransport(broker_url, **kwargs))
        return made[-1]

    monkeypatch.setattr(server_module, "new_transport", new_transport)
    monkeypatch.setattr(stats_module, "new_transport", new_transport)
    monkeypatch.setenv("DORMANT_POD_ID", "pod-7")
    return made


def args(*argv: str) -> Any:
    return runtime_main._parse(["--broker-url", "mqtt://broker.invalid:1", *argv])


def test_the_client_id_is_stable_per_slot_and_differs_for_version_only_serving() -> None:
    assert runtime_main.client_id_for("svc", 3, 1, "pod-a") == "dormant-svc-v3-s1"
    assert runtime_main.client_id_for("svc", 3, 1, "pod-b") == "dormant-svc-v3-s1"
    assert runtime_main.client_id_for("svc", 3, None, "pod-a") == "dormant-svc-v3-pod-a"
    assert runtime_main.client_id_for("svc", 3, 1, "pod-a", live=False) == "dormant-svc-v3-s1-vonly"
    # A new generation of the same version (new variables or limits) gets a session of its own.
    assert runtime_main.client_id_for("svc", 3, 1, "pod-a", generation=2) == "dormant-svc-v3-s1-g2"
    assert (
        runtime_main.client_id_for("svc", 3, 1, "pod-a", generation=2, live=False)
        == "dormant-svc-v3-s1-g2-vonly"
    )


def test_arguments_and_their_defaults() -> None:
    parsed = runtime_main._parse([])
    assert (parsed.app_dir, parsed.version, parsed.not_live, parsed.no_dedup) == (None, 1, False, False)
    assert (parsed.max_in_flight, parsed.slot, parsed.drain_timeout) == (256, None, 30.0)


async def test_a_service_is_served_until_stopped_then_drained(
    quiet_broker: list[QuietTransport], tmp_path: Path
) -> None:
    app = shutil.copytree(PROBE, tmp_path / "probe-service")
    events, stop = Events(), asyncio.Event()
    serving = asyncio.create_task(
        runtime_main._serve(app, 4, True, 2, args("--no-dedup"), cast(EventChannel, events), stop)
    )
    try:
        await until(lambda: READY in events.kinds())
        assert events.emitted[0] == (READY, {"service": "probe-service", "version": 4})
        [server_transport] = [t for t in quiet_broker if t.kwargs.get("manual_ack")]
        assert server_transport.kwargs["client_id"] == "dormant-probe-service-v4-s2"
    finally:
        stop.set()
        code = await asyncio.wait_for(serving, 20)
    assert code == 0
    assert events.emitted[-1] == (DRAINED, {"cut_off": 0})
    assert server_transport.closed.is_set()


async def test_a_service_that_cannot_load_fails_with_the_reason(
    quiet_broker: list[QuietTransport], tmp_path: Path
) -> None:
    events = Events()
    code = await runtime_main._serve(
        tmp_path / "nothing-here",
        1,
        True,
        None,
        args("--no-dedup"),
        cast(EventChannel, events),
        asyncio.Event(),
    )
    assert code == 1
    [(kind, fields)] = events.emitted
    assert kind == FAILED and fields["error"]


async def test_a_service_that_breaks_while_loading_fails_with_the_exception(
    quiet_broker: list[QuietTransport], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(app_dir: Path) -> Any:
        raise KeyError("schema")

    monkeypatch.setattr(runtime_main, "load_service", broken)
    events = Events()
    code = await runtime_main._serve(
        tmp_path, 1, True, None, args("--no-dedup"), cast(EventChannel, events), asyncio.Event()
    )
    assert code == 1 and events.emitted == [(FAILED, {"error": "KeyError: 'schema'"})]


async def test_an_unreachable_call_store_fails_the_start(
    quiet_broker: list[QuietTransport], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app = shutil.copytree(PROBE, tmp_path / "probe-service")
    monkeypatch.setenv("DORMANT_CATALOG_URL", f"postgresql://dormant@127.0.0.1:{free_port()}/nothing")
    events = Events()
    code = await runtime_main._serve(app, 1, True, None, args(), cast(EventChannel, events), asyncio.Event())
    assert code == 1
    [(kind, fields)] = events.emitted
    assert kind == FAILED and "call de-duplication store" in fields["error"]
    assert quiet_broker == []  # it never went on to connect to the broker
    # ... and what it had started stopped with it: no messaging client left retrying in this loop.
    await asyncio.sleep(0)
    leftover = [t for t in asyncio.all_tasks() if "RuntimePlatform._connect" in repr(t.get_coro())]
    assert leftover == []


class Loop:
    """Stands in for the running loop's signal handling (the test process keeps its own)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.handlers: dict[int, Callable[[], None]] = {}
        monkeypatch.setattr(asyncio.get_running_loop(), "add_signal_handler", self.add)

    def add(self, signum: int, callback: Callable[..., None], *cb_args: Any) -> None:
        self.handlers[signum] = lambda: callback(*cb_args)


def commands_from(*items: Command | None) -> Callable[[], Any]:
    async def read() -> asyncio.Queue[Command | None]:
        queue: asyncio.Queue[Command | None] = asyncio.Queue()
        for item in items:
            queue.put_nowait(item)
        return queue

    return read


@pytest.mark.parametrize("first", [Drain(), None])
async def test_a_runtime_told_to_drain_before_loading_exits_at_once(
    monkeypatch: pytest.MonkeyPatch, first: Drain | None
) -> None:
    Loop(monkeypatch)
    events = Events()
    monkeypatch.setattr(EventChannel, "from_env", classmethod(lambda cls: events))
    monkeypatch.setattr(runtime_main, "read_commands", commands_from(first))
    assert await runtime_main._main(runtime_main._parse([])) == 0
    assert events.emitted == [(STANDBY, {}), (DRAINED, {"cut_off": 0})]


async def test_a_loaded_runtime_serves_until_the_sidecar_says_drain(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = Loop(monkeypatch)
    events = Events()
    served: list[tuple[Any, ...]] = []

    async def serve(
        app_dir: Path, version: int, live: bool, slot: int | None, a: Any, ev: Any, stop: asyncio.Event
    ) -> int:
        served.append((app_dir, version, live, slot))
        await stop.wait()
        return 0

    load = Load(app_dir=Path("/layers/x"), service="x", version=5, live=False, slot=3)
    monkeypatch.setattr(EventChannel, "from_env", classmethod(lambda cls: events))
    monkeypatch.setattr(runtime_main, "read_commands", commands_from(load, Drain()))
    monkeypatch.setattr(runtime_main, "_serve", serve)
    assert await asyncio.wait_for(runtime_main._main(runtime_main._parse([])), 10) == 0
    assert served == [(Path("/layers/x"), 5, False, 3)]
    assert events.emitted == [(STANDBY, {})]
    assert set(loop.handlers) == {2, 15}  # SIGINT and SIGTERM drain too


async def test_standalone_mode_serves_the_app_dir_and_a_signal_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = Loop(monkeypatch)
    served: list[Path] = []

    async def serve(
        app_dir: Path, version: int, live: bool, slot: int | None, a: Any, ev: Any, stop: Any
    ) -> int:
        served.append(app_dir)
        loop.handlers[15]()  # SIGTERM
        await stop.wait()
        return 0

    monkeypatch.setattr(runtime_main, "_serve", serve)
    assert await runtime_main._main(runtime_main._parse(["--app-dir", "/srv/app", "--version", "2"])) == 0
    assert served == [Path("/srv/app")]


# ------------------------------------------------------------------------------------------ statistics


def test_answered_calls_are_counted_by_outcome_and_latency() -> None:
    stats = CallStats()
    mark_start()
    stats.record(True, b'{"ok": 1}')
    stats.record(False, orjson.dumps({"type": "ValidationError", "message": "m"}))
    stats.record(False, b"not json")
    stats.record(False, b"[1]")
    window = stats.take("svc", 2, "pod-1")
    assert (window["service"], window["version"], window["pod"]) == ("svc", 2, "pod-1")
    assert window["calls"] == 4 and window["ok"] == 1
    assert window["errors"] == {"ValidationError": 1, "SystemError": 2}
    assert window["latency"]["le"] == list(BOUNDS_MS) and sum(window["latency"]["counts"]) == 4
    assert len(window["latency"]["counts"]) == len(BOUNDS_MS) + 1
    assert window["seconds"] >= 0
    # Taking a window starts the next one.
    empty = stats.take("svc", 2, "pod-1")
    assert empty["calls"] == 0 and empty["errors"] == {} and empty["at"] >= window["at"]


def test_a_slow_call_lands_in_its_latency_bucket(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = CallStats()
    mark_start()
    started = stats_module._STARTED.get()
    assert started is not None
    with monkeypatch.context() as patched:  # only while recording: the event loop reads the clock too
        patched.setattr(time, "monotonic", lambda: started + 0.15)  # 150 ms after the start
        stats.record(True, b"{}")
    counts = stats.take("s", 1, "p")["latency"]["counts"]
    assert counts[BOUNDS_MS.index(200)] == 1


class StatsTransport:
    def __init__(self, sink: StatsSink) -> None:
        self.sink = sink

    async def connect(self) -> None:
        if self.sink.refuse:
            self.sink.refuse -= 1
            raise TransportError("refused")

    async def publish(self, message: Message) -> int:
        if self.sink.fail_after is not None and len(self.sink.published) >= self.sink.fail_after:
            self.sink.fail_after = None
            raise TransportError("connection lost")
        self.sink.published.append(message)
        return 0

    async def close(self, *, end_session: bool = False) -> None:
        self.sink.closed += 1


class StatsSink:
    def __init__(self) -> None:
        self.published: list[Message] = []
        self.connections = 0
        self.closed = 0
        self.refuse = 0
        self.fail_after: int | None = None

    def new_transport(self, broker_url: str, **kwargs: Any) -> StatsTransport:
        self.connections += 1
        return StatsTransport(self)


async def test_windows_are_published_each_interval_and_the_connection_is_restored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sink = StatsSink()
    sink.refuse, sink.fail_after = 1, 2
    monkeypatch.setattr(stats_module, "new_transport", sink.new_transport)
    stats = CallStats()
    stats.record(True, b"{}")
    publisher = StatsPublisher(
        stats,
        broker_url="mqtt://x:1",
        service="svc",
        version=3,
        pod_id="pod-9",
        client_id="stats-1",
        interval_s=0.01,
    )
    task = asyncio.create_task(publisher.run())
    await until(lambda: len(sink.published) >= 4)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.connections >= 3  # refused, lost after two windows, restored
    assert sink.closed >= sink.connections - 1
    assert {m.topic for m in sink.published} == {wire.stats_topic("svc", 3, "pod-9")}
    assert {m.qos for m in sink.published} == {0}
    windows = [orjson.loads(m.payload) for m in sink.published]
    assert windows[0]["calls"] == 1 and all(w["calls"] == 0 for w in windows[1:])
