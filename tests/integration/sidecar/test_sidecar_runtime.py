"""RuntimeProcess and RuntimeSupervisor against the fake runtime: the control protocol end to end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sidecar_helpers import FAKE_RUNTIME, alive, read_log, wait_for

from dormant._control import Load
from dormant_sidecar.runtime import RuntimeFailed, RuntimeProcess
from dormant_sidecar.supervisor import RuntimeSupervisor


def app_dir(tmp_path: Path, text: str) -> Path:
    path = tmp_path / text.replace(" ", "-")
    path.mkdir()
    (path / "app.txt").write_text(text)
    return path


async def test_standby_load_ready_drain(tmp_path: Path, runtime_log: Path) -> None:
    lines: list[str] = []
    runtime = await RuntimeProcess.spawn(FAKE_RUNTIME, dict(os.environ), lines.append)
    await runtime.wait_standby(10)
    await runtime.load(Load(app_dir(tmp_path, "hello"), service="svc", version=3, live=True), timeout_s=10)
    assert await runtime.drain(5) == 0
    events = read_log(runtime_log)
    assert [e["event"] for e in events] == ["start", "load", "drained"]
    assert events[1]["content"] == "hello" and events[1]["version"] == 3 and events[1]["live"] is True
    assert events[2]["why"] == "command"
    assert f"[standby {runtime.pid}] standby {runtime.pid} up" in lines
    assert "[svc v3] serving svc v3" in lines
    assert not alive(runtime.pid)


async def test_failed_load_raises_with_the_runtime_error(tmp_path: Path, runtime_log: Path) -> None:
    runtime = await RuntimeProcess.spawn(FAKE_RUNTIME, dict(os.environ), lambda _: None)
    await runtime.wait_standby(10)
    with pytest.raises(RuntimeFailed, match="cannot load svc: fail here"):
        await runtime.load(Load(app_dir(tmp_path, "fail here"), service="svc", version=1), timeout_s=10)
    assert await runtime.exited == 1


async def test_closing_stdin_drains_the_runtime(runtime_log: Path) -> None:
    runtime = await RuntimeProcess.spawn(FAKE_RUNTIME, dict(os.environ), lambda _: None)
    await runtime.wait_standby(10)
    assert runtime.proc.stdin is not None
    runtime.proc.stdin.close()
    assert await runtime.exited == 0
    assert read_log(runtime_log)[-1]["why"] == "eof"


async def test_a_runtime_that_never_stands_by_times_out() -> None:
    runtime = await RuntimeProcess.spawn(["sleep", "30"], dict(os.environ), lambda _: None)
    with pytest.raises(RuntimeFailed, match=r"not standing by within 0\.3 s"):
        await runtime.wait_standby(0.3)
    assert await runtime.drain(0.3) == -9
    dead = await RuntimeProcess.spawn(["false"], dict(os.environ), lambda _: None)
    with pytest.raises(RuntimeFailed, match="exited with code 1 before standing by"):
        await dead.wait_standby(5)


async def test_supervisor_keeps_one_standby_and_reaps_everything(tmp_path: Path, runtime_log: Path) -> None:
    supervisor = RuntimeSupervisor(
        cmd=FAKE_RUNTIME,
        env=dict(os.environ),
        sink=lambda _: None,
        standby_timeout_s=10,
        load_timeout_s=10,
        drain_timeout_s=5,
    )
    await supervisor.ensure_standby()
    first_standby = supervisor.standby
    assert first_standby is not None
    runtime = await supervisor.start(Load(app_dir(tmp_path, "one"), service="svc", version=1))
    assert runtime.pid == first_standby.pid  # the warm standby did the load
    second_standby = supervisor.standby
    assert second_standby is not None and second_standby.pid != runtime.pid
    # A failed load kills that runtime and still leaves a fresh standby.
    with pytest.raises(RuntimeFailed):
        await supervisor.start(Load(app_dir(tmp_path, "fail"), service="svc", version=2))
    assert supervisor.standby is not None and supervisor.standby.pid not in (runtime.pid, second_standby.pid)
    pids = {runtime.pid, second_standby.pid, supervisor.standby.pid}
    supervisor.drain_soon(runtime)
    await supervisor.close()
    assert not any(alive(pid) for pid in pids)
    assert supervisor.children == frozenset()
    await wait_for(
        lambda: any(e["event"] == "drained" and e["pid"] == runtime.pid for e in read_log(runtime_log))
    )
