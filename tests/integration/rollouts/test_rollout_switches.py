"""Switches on a real mesh under steady load: blue-green and a manual rollback, a rolling update
batch by batch, and a controller killed mid-rollout that a restarted one finishes."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest
from e2e.mesh import Mesh, call_many
from rollout_helpers import (
    SERVICE,
    publish_version,
    start_controller,
    steady_calls,
    wait_rollout,
    wait_routes,
)

from dormant_catalog import open_catalog
from dormant_cli import main


async def _versions(mesh: Mesh, tmp_path: Path, *, replicas: int, pods: int) -> tuple[int, int]:
    v1 = await publish_version(mesh, tmp_path)
    v2 = await publish_version(mesh, tmp_path)
    await mesh.deploy(SERVICE, v1, replicas=replicas)
    for i in range(pods):
        mesh.start_pod(f"pod-{i}")
    mesh.pods["controller"] = start_controller(mesh)
    await mesh.wait_serving(SERVICE)
    await wait_routes(mesh.broker_url, {v1: 100})
    return v1, v2


async def test_blue_green_switch_and_manual_rollback_fail_no_call(
    mesh: Mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v1, v2 = await _versions(mesh, tmp_path, replicas=1, pods=2)
    stop = asyncio.Event()
    load = asyncio.create_task(steady_calls(mesh.broker_url, stop))
    await asyncio.sleep(0.5)
    async with await open_catalog(mesh.catalog_url) as catalog:
        await catalog.start_rollout(
            SERVICE,
            v2,
            {"strategy": "BlueGreen", "testDuration": "PT1S", "keepBlue": "PT30S", "minSamples": 1},
        )
    # The test phase: green serves its version topic only, and needs its minimum samples to switch.
    await mesh.wait_serving(SERVICE, version=v2)
    await call_many(mesh.broker_url, SERVICE, "echo", [{"text": "t"}], version=v2)
    done = await wait_rollout(mesh.catalog_url, ("succeeded", "rolled-back"))
    assert done.state == "succeeded", done.reason
    await wait_routes(mesh.broker_url, {v2: 100})
    await asyncio.sleep(1.0)
    rolled = time.monotonic()
    async with await open_catalog(mesh.catalog_url) as catalog:
        said = await catalog.rollback(SERVICE, actor="test")
        assert f"to v{v1}" in said, said
        assert (await catalog.get_alias(SERVICE)).weights == {v1: 100}  # type: ignore[union-attr]
    await wait_routes(mesh.broker_url, {v1: 100})
    switch_s = time.monotonic() - rolled
    await asyncio.sleep(3.0)  # past the rolled-back version's retirement
    stop.set()
    result = await load
    print(
        f"blue-green + rollback: {dict(result.versions)} answered, {len(result.failed)} failed;"
        f" routes back on v{v1} {switch_s:.2f} s after the rollback"
    )
    assert result.failed == [] and not result.errors
    assert result.versions[v1] > 0 and result.versions[v2] > 0
    async with await open_catalog(mesh.catalog_url) as catalog:
        assert {s.version for s in await catalog.list_slots(SERVICE)} == {v1}
        last = (await catalog.list_rollouts(SERVICE, limit=1))[0]
    assert last.state == "rolled-back" and "manual rollback" in (last.reason or "")
    # `dormant wait` on a rolled-back rollout: exit 1 with its reason, at once.
    capsys.readouterr()
    waited = await asyncio.to_thread(main, ["wait", SERVICE, "--catalog-url", mesh.catalog_url])
    out = capsys.readouterr().out
    assert waited == 1 and "rolled-back: manual rollback" in out, out


async def test_rolling_replaces_slots_batch_by_batch_and_fails_no_call(mesh: Mesh, tmp_path: Path) -> None:
    v1, v2 = await _versions(mesh, tmp_path, replicas=3, pods=3)
    stop = asyncio.Event()
    load = asyncio.create_task(steady_calls(mesh.broker_url, stop))
    await asyncio.sleep(0.5)
    seen: list[int] = []
    async with await open_catalog(mesh.catalog_url) as catalog:
        await catalog.start_rollout(
            SERVICE,
            v2,
            {"strategy": "Rolling", "increments": [33, 66, 100], "batchDuration": "PT1S", "minSamples": 5},
        )
        end = time.monotonic() + 120  # generous: a busy machine loads runtimes slowly
        while (rollout := (await catalog.list_rollouts(SERVICE, limit=1))[0]).active:
            slots = await catalog.list_slots(SERVICE)
            new = sum(1 for s in slots if s.version == v2 and s.serving)
            if not seen or seen[-1] != new:
                seen.append(new)
            assert time.monotonic() < end, f"rolling update not done: {rollout}"
            await asyncio.sleep(0.05)
        slots = await catalog.list_slots(SERVICE)
    assert rollout.state == "succeeded", rollout.reason
    await wait_routes(mesh.broker_url, {v2: 100})
    await asyncio.sleep(1.0)
    stop.set()
    result = await load
    print(
        f"rolling: v{v2} slots serving over time {seen} of 3; {dict(result.versions)} answered,"
        f" {len(result.failed)} failed"
    )
    assert seen == [0, 1, 2, 3], seen  # one slot a batch: 0/3 -> 1/3 -> 2/3 -> 3/3
    assert [s.version for s in slots] == [v2] * 3
    assert result.failed == [] and not result.errors
    assert result.versions[v1] > 0 and result.versions[v2] > 0


async def test_a_controller_killed_mid_rollout_is_replaced_and_the_rollout_finishes(
    mesh: Mesh, tmp_path: Path
) -> None:
    v1, v2 = await _versions(mesh, tmp_path, replicas=1, pods=2)
    stop = asyncio.Event()
    load = asyncio.create_task(steady_calls(mesh.broker_url, stop))
    async with await open_catalog(mesh.catalog_url) as catalog:
        started = await catalog.start_rollout(
            SERVICE,
            v2,
            {"strategy": "canary", "increments": [20, 60, 100], "stepDuration": "PT1.5S", "minSamples": 5},
        )
        end = time.monotonic() + 20
        while True:
            rollout = (await catalog.list_rollouts(SERVICE, limit=1))[0]
            if rollout.step == 1 and rollout.step_started_at is not None:
                break
            assert rollout.state == "running" and time.monotonic() < end, rollout
            await asyncio.sleep(0.05)
        mesh.pods["controller"].send_signal(signal.SIGKILL)
        assert mesh.pods["controller"].wait(5) == -signal.SIGKILL
        await asyncio.sleep(2.0)  # longer than a step: nobody drives the rollout meanwhile
        stalled = (await catalog.list_rollouts(SERVICE, limit=1))[0]
        assert (stalled.state, stalled.step) == ("running", 1), stalled
    restarted = time.monotonic()
    mesh.pods["controller-2"] = start_controller(mesh, "controller-2")
    done = await wait_rollout(mesh.catalog_url, ("succeeded", "rolled-back"), timeout=20)
    finish_s = time.monotonic() - restarted
    await wait_routes(mesh.broker_url, {v2: 100})
    stop.set()
    result = await load
    print(
        f"controller killed at step 2/3: {done.state} (rollout {started.rollout_id});"
        f" {finish_s:.1f} s after the restart; {dict(result.versions)} answered, {len(result.failed)} failed"
    )
    assert done.rollout_id == started.rollout_id and done.state == "succeeded", done.reason
    assert [f"step{i}" in done.numbers for i in (1, 2, 3)] == [True] * 3
    assert result.failed == [] and not result.errors
    assert result.versions[v1] > 0 and result.versions[v2] > 0
