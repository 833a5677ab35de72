"""``python -m dormant_sidecar`` as a real process: SIGTERM drains cleanly, SIGKILL gets taken over."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest_asyncio
from sidecar_helpers import alive, pod_command, read_log, subprocess_env, wait_for

from dormant_catalog import Catalog
from dormant_sidecar import Pod

DeployApp = Callable[..., Awaitable[int]]
StartPod = Callable[..., Awaitable[Pod]]
Spawn = Callable[[str], Awaitable[asyncio.subprocess.Process]]


@pytest_asyncio.fixture
async def spawn_pod(
    catalog_url: str, layer_store: Path, tmp_path: Path, runtime_log: Path
) -> AsyncIterator[Spawn]:
    procs: list[asyncio.subprocess.Process] = []

    async def spawn(pod_id: str) -> asyncio.subprocess.Process:
        cmd = pod_command(
            catalog_url=catalog_url, layer_store=layer_store, work_dir=tmp_path / pod_id, pod_id=pod_id
        )
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            env=subprocess_env(runtime_log),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        procs.append(proc)
        return proc

    yield spawn
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(proc.communicate(), 10)


def pids_of(log: Path, pod_id: str) -> set[int]:
    return {e["pid"] for e in read_log(log) if e["event"] == "start" and e["pod_id"] == pod_id}


def loaded_by(log: Path, pids: set[int]) -> list[dict[str, Any]]:
    return [e for e in read_log(log) if e["event"] == "load" and e["pid"] in pids]


async def test_sigterm_drains_releases_and_leaves_no_child(
    catalog: Catalog, deploy_app: DeployApp, spawn_pod: Spawn, runtime_log: Path
) -> None:
    await deploy_app("svc", "code")
    proc = await spawn_pod("term-pod")
    [load] = await wait_for(lambda: loaded_by(runtime_log, pids_of(runtime_log, "term-pod")), what="load")
    await wait_for(lambda: len(pids_of(runtime_log, "term-pod")) == 2, what="standby spawned")
    children = pids_of(runtime_log, "term-pod")
    assert (await catalog.list_slots("svc"))[0].pod_id == "term-pod"

    proc.send_signal(signal.SIGTERM)
    _, stderr = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, stderr.decode()
    assert (await catalog.list_slots("svc"))[0].pod_id is None
    assert not [pid for pid in children if alive(pid)]
    assert any(e["event"] == "drained" and e["pid"] == load["pid"] for e in read_log(runtime_log))
    lines = stderr.decode().splitlines()
    # Not a terminal: one JSON record per line, the runtime's output stamped with its app and version.
    records = [json.loads(line) for line in lines]
    assert {"functionName": "svc", "version": "v1", "message": "serving svc v1"}.items() <= next(
        r for r in records if r["message"] == "serving svc v1"
    ).items()
    assert any("SIGTERM: draining pod term-pod" in r["message"] for r in records)


async def test_sigkilled_pod_is_taken_over_after_its_lease(
    catalog: Catalog, deploy_app: DeployApp, spawn_pod: Spawn, start_pod: StartPod, runtime_log: Path
) -> None:
    await deploy_app("svc", "code")
    victim = await spawn_pod("victim")
    [first] = await wait_for(
        lambda: loaded_by(runtime_log, pids_of(runtime_log, "victim")), what="victim serves"
    )
    await wait_for(lambda: len(pids_of(runtime_log, "victim")) == 2, what="victim standby")
    survivor = await start_pod(pod_id="survivor")
    await asyncio.sleep(0.5)
    assert survivor.claim is None  # the slot is held

    victim.kill()
    await victim.wait()
    killed_at = asyncio.get_running_loop().time()
    [taken] = await wait_for(
        lambda: loaded_by(runtime_log, pids_of(runtime_log, "survivor")), what="takeover"
    )
    assert asyncio.get_running_loop().time() - killed_at < 4.0  # lease 1 s, poll 0.5 s
    assert taken["service"] == "svc" and taken["version"] == 1
    assert (await catalog.list_slots("svc"))[0].pod_id == "survivor"
    # The dead pod's runtimes see their stdin close and go away on their own.
    await wait_for(lambda: not any(alive(pid) for pid in pids_of(runtime_log, "victim")), what="orphans exit")
    assert any(
        e["event"] == "drained" and e["pid"] == first["pid"] and e["why"] == "eof"
        for e in read_log(runtime_log)
    )
