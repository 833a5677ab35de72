"""Weighted routing and canaries on a real mesh: A/B split and sticky keys, a healthy canary walking
to 100 %, and canaries rolled back automatically on error rate or p99 latency."""

from __future__ import annotations

import asyncio
from pathlib import Path

from e2e.mesh import Mesh
from rollout_helpers import (
    SERVICE,
    call_versions,
    publish_version,
    start_controller,
    steady_calls,
    wait_rollout,
    wait_routes,
)

from dormant_catalog import open_catalog


async def _two_versions(mesh: Mesh, tmp_path: Path, **v2: int) -> tuple[int, int]:
    v1 = await publish_version(mesh, tmp_path)
    second = await publish_version(mesh, tmp_path, **v2)
    await mesh.deploy(SERVICE, v1, replicas=1)
    mesh.start_pod("pod-a")
    mesh.start_pod("pod-b")
    mesh.pods["controller"] = start_controller(mesh)
    await mesh.wait_serving(SERVICE)
    await wait_routes(mesh.broker_url, {v1: 100})
    return v1, second


async def test_ab_split_lands_within_5_percent_and_routing_keys_stick(mesh: Mesh, tmp_path: Path) -> None:
    v1, v2 = await _two_versions(mesh, tmp_path)
    async with await open_catalog(mesh.catalog_url) as catalog:
        await catalog.start_rollout(
            SERVICE,
            v2,
            {
                "strategy": "ABTesting",
                "trafficSplit": {f"v{v1}": 50, f"v{v2}": 50},
                "testDuration": "PT1S",
                "minSamples": 1,
            },
        )
    await wait_routes(mesh.broker_url, {v1: 50, v2: 50})

    seen = await call_versions(mesh.broker_url, 2000)
    print(f"A/B 50/50 over 2000 calls: {dict(seen)}")
    assert abs(seen[v1] - 1000) <= 100 and abs(seen[v2] - 1000) <= 100, seen
    sticky = {
        key: await call_versions(mesh.broker_url, 20, routing_key=key) for key in ("ann", "bob", "cy", "di")
    }
    assert all(len(versions) == 1 for versions in sticky.values()), sticky
    await wait_rollout(mesh.catalog_url, ("waiting",))
    async with await open_catalog(mesh.catalog_url) as catalog:
        await catalog.promote(SERVICE, actor="test")
    done = await wait_rollout(mesh.catalog_url, ("succeeded",))
    assert done.to_version == v2
    await wait_routes(mesh.broker_url, {v2: 100})
    assert set(await call_versions(mesh.broker_url, 50)) == {v2}


async def test_a_healthy_canary_walks_to_100_percent_with_no_failed_call(mesh: Mesh, tmp_path: Path) -> None:
    v1, v2 = await _two_versions(mesh, tmp_path)
    stop = asyncio.Event()
    load = asyncio.create_task(steady_calls(mesh.broker_url, stop))
    await asyncio.sleep(0.5)
    async with await open_catalog(mesh.catalog_url) as catalog:
        await catalog.start_rollout(
            SERVICE,
            v2,
            {"strategy": "canary", "increments": [10, 50, 100], "stepDuration": "2s", "minSamples": 5},
        )
    done = await wait_rollout(mesh.catalog_url, ("succeeded", "rolled-back"))
    await wait_routes(mesh.broker_url, {v2: 100})
    await asyncio.sleep(1.0)
    stop.set()
    result = await load
    print(f"healthy canary: {done.state}, {dict(result.versions)} answered, {len(result.failed)} failed")
    assert done.state == "succeeded", done.reason
    assert result.failed == [] and not result.errors
    assert result.versions[v1] > 0 and result.versions[v2] > 0
    assert [done.numbers[f"step{i}"]["calls"] > 0 for i in (1, 2, 3)] == [True] * 3


async def test_a_canary_failing_20_percent_is_rolled_back_within_one_interval(
    mesh: Mesh, tmp_path: Path
) -> None:
    v1, v2 = await _two_versions(mesh, tmp_path, fail_every=5)
    stop = asyncio.Event()
    load = asyncio.create_task(steady_calls(mesh.broker_url, stop))
    async with await open_catalog(mesh.catalog_url) as catalog:
        await catalog.start_rollout(
            SERVICE,
            v2,
            {
                "strategy": "canary",
                "increments": [30, 100],
                "stepDuration": "PT5S",
                "minSamples": 10,
                "rollbackThresholds": {"errorRate": 0.05},
            },
        )
    done = await wait_rollout(mesh.catalog_url, ("succeeded", "rolled-back"))
    await wait_routes(mesh.broker_url, {v1: 100})
    stop.set()
    await load
    print(f"failing canary: {done.state} at step {done.step + 1}: {done.reason} {done.numbers}")
    assert done.state == "rolled-back" and done.step == 0, done.reason
    assert "error rate" in (done.reason or "")
    assert done.finished_at is not None and done.finished_at - done.created_at
    after = await call_versions(mesh.broker_url, 200)
    assert set(after) == {v1}, after
    async with await open_catalog(mesh.catalog_url) as catalog:
        assert (await catalog.get_alias(SERVICE)).weights == {v1: 100}  # type: ignore[union-attr]
        actions = [a.action for a in await catalog.list_audit(SERVICE)]
    assert "rollback" in actions


async def test_a_canary_whose_p99_breaches_the_threshold_is_rolled_back(mesh: Mesh, tmp_path: Path) -> None:
    v1, v2 = await _two_versions(mesh, tmp_path, delay_ms=300)
    stop = asyncio.Event()
    load = asyncio.create_task(steady_calls(mesh.broker_url, stop))
    async with await open_catalog(mesh.catalog_url) as catalog:
        await catalog.start_rollout(
            SERVICE,
            v2,
            {
                "strategy": "canary",
                "increments": [30, 100],
                "stepDuration": "PT5S",
                "minSamples": 10,
                "rollbackThresholds": {"latencyP99Ms": 100},
            },
        )
    done = await wait_rollout(mesh.catalog_url, ("succeeded", "rolled-back"))
    stop.set()
    await load
    print(f"slow canary: {done.state}: {done.reason}")
    assert done.state == "rolled-back" and "p99" in (done.reason or ""), done.reason
    await wait_routes(mesh.broker_url, {v1: 100})
