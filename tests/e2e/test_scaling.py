"""Autoscaling (issue 12, item 6; FR-FN-006/007): replicas follow the load between minInstances and
maxInstances, scale to zero after scaleDownCooldown without calls, wake up on the first call, rise with
a schedule's window and to preProvisionedConcurrency; every change is audited.

A real mesh: Mosquitto, Postgres, the controller (its autoscaler) and pooled pods as subprocesses.
Cooldowns are a couple of seconds so each test stays short; every wait is for a condition, bounded.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest_asyncio

from dormant import Client, wire
from dormant.transport import NO_MATCHING_SUBSCRIBERS
from dormant_catalog import Catalog, open_catalog
from dormant_catalog.audit import list_audit
from dormant_catalog.deployments import get_deployment
from dormant_catalog.gateway import functions
from dormant_local import MosquittoProcess

from .mesh import PROBE, Mesh, child_env, clear_retained, copy_service, running_mesh

ZERO, LOAD, SCHED = "scale-zero", "scale-load", "scale-sched"


def probe_copy(tmp: Path, name: str) -> Path:
    service = copy_service(PROBE, tmp / name)
    module = service / "probe.py"
    module.write_text(
        module.read_text().replace('@service("probe-service", auth="off")', f'@service("{name}", auth="off")')
    )
    return service


@pytest_asyncio.fixture
async def mesh(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> AsyncIterator[Mesh]:
    with running_mesh(broker.url, catalog_url, tmp_path) as m:
        try:
            yield m
        finally:
            m.stop()
            await clear_retained(broker.url, [ZERO, LOAD, SCHED])


@pytest_asyncio.fixture
async def catalog(catalog_url: str) -> AsyncIterator[Catalog]:
    cat = await open_catalog(catalog_url)
    try:
        yield cat
    finally:
        await cat.close()


async def set_scaling(catalog: Catalog, service: str, settings: dict[str, Any] | None) -> None:
    from dormant_catalog.scaling import check_scaling

    value = None if settings is None else check_scaling(settings)
    await catalog.db.run(functions.update_function, service, {"scaling": value}, actor="test")


async def replicas(catalog: Catalog, service: str) -> int:
    deployment = await catalog.db.run(get_deployment, service)
    assert deployment is not None
    return deployment.replicas


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 25.0) -> float:
    """Seconds until ``check()`` holds (polled), or an AssertionError naming ``what``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


async def scale_events(catalog: Catalog, service: str) -> list[dict[str, Any]]:
    return [r.detail for r in await catalog.db.run(list_audit, service) if r.action == "scale"]


async def start(mesh: Mesh, tmp: Path, name: str, *, pods: int, replicas: int = 1) -> None:
    _, version = await mesh.publish(probe_copy(tmp, name), import_check=False)
    await mesh.deploy(name, version, replicas)
    for i in range(pods):
        mesh.start_pod(f"{name}-pod-{i}")
    mesh.start_controller()
    if pods:
        await mesh.wait_serving(name)


async def test_scale_to_zero_then_the_first_call_wakes_it(
    mesh: Mesh, catalog: Catalog, tmp_path: Path
) -> None:
    await start(mesh, tmp_path, ZERO, pods=1)
    # Through the CLI: minInstances 0, 2 s without calls scales to zero.
    command = [sys.executable, "-m", "dormant_cli", "scale", ZERO, "--min", "0", "--max", "2"]
    command += ["--scale-down-cooldown", "2s", "--scale-up-cooldown", "0"]
    env = child_env(DORMANT_CATALOG_URL=mesh.catalog_url)
    result = await asyncio.to_thread(
        subprocess.run, command, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "0..2 replicas" in result.stdout

    async def asleep() -> bool:
        return await replicas(catalog, ZERO) == 0

    await until(asleep, f"{ZERO} scaled to zero")
    async with Client(mesh.broker_url) as client:
        # Wait until nothing serves it any more (its pod drained), so the next call is a cold one.
        async def drained() -> bool:
            probe = wire.function_topic(ZERO, "dormantReadinessProbe")
            return await client.publish(probe, b"{}") == NO_MATCHING_SUBSCRIBERS

        await until(drained, f"no runtime of {ZERO} subscribed any more")
        began = time.perf_counter()
        answer = await client.call(ZERO, "echo", {"text": "wake"}, timeout=20)
        cold_ms = (time.perf_counter() - began) * 1000
        assert answer["text"] == "wake"
        began = time.perf_counter()
        await client.call(ZERO, "echo", {"text": "warm"}, timeout=20)
        warm_ms = (time.perf_counter() - began) * 1000
    print(
        f"\nfirst call from zero replicas (cold start): {cold_ms:.0f} ms; next call (warm): {warm_ms:.1f} ms"
    )
    assert await replicas(catalog, ZERO) == 1
    await until(asleep, f"{ZERO} back to zero after the cooldown")
    events = await scale_events(catalog, ZERO)
    assert [(e["from"], e["to"]) for e in events] == [(1, 0), (0, 1), (1, 0)], events
    assert "wake" in events[1]["reason"]
    assert "scaleDownCooldown" in events[0]["reason"]


async def test_load_scales_up_to_max_and_back_down_to_min(
    mesh: Mesh, catalog: Catalog, tmp_path: Path
) -> None:
    await start(mesh, tmp_path, LOAD, pods=2)  # the third slot waits for a pod: replicas are the catalog's
    await set_scaling(
        catalog,
        LOAD,
        {
            "minInstances": 1,
            "maxInstances": 3,
            "targetConcurrency": 1,
            "scaleUpCooldown": 0,
            "scaleDownCooldown": 2,
        },
    )
    stop = asyncio.Event()
    seen: list[int] = []

    async def caller(client: Client) -> None:
        while not stop.is_set():
            await client.call(LOAD, "sleep", {"ms": 300}, timeout=20)

    async def at_max() -> bool:
        seen.append(await replicas(catalog, LOAD))
        return seen[-1] == 3

    async with Client(mesh.broker_url) as client:
        # 10 callers x 300 ms calls: about 10 in flight, 10 replicas' worth at 1 each: capped at 3.
        load = [asyncio.create_task(caller(client)) for _ in range(10)]
        try:
            await until(at_max, f"{LOAD} scaled up to 3 under load")
            await asyncio.sleep(1.5)  # still loaded, asking for more: it must not go past maxInstances
            seen.append(await replicas(catalog, LOAD))
        finally:
            stop.set()
            await asyncio.gather(*load)
    assert max(seen) == 3 and seen[-1] == 3, seen

    async def at_min() -> bool:
        return await replicas(catalog, LOAD) == 1

    await until(at_min, f"{LOAD} back to minInstances after the cooldown")
    await asyncio.sleep(3)  # minInstances holds: never below 1
    assert await replicas(catalog, LOAD) == 1
    events = await scale_events(catalog, LOAD)
    ups = [e for e in events if e["to"] > e["from"]]
    assert ups and all("load" in e["reason"] for e in ups), events
    assert all(e["to"] <= 3 for e in events), events
    assert events[-1]["to"] == 1 and "scaleDownCooldown" in events[-1]["reason"], events


async def test_a_schedule_window_and_pre_provisioning_raise_the_floor(
    catalog: Catalog, mesh: Mesh, tmp_path: Path
) -> None:
    await start(mesh, tmp_path, SCHED, pods=0)  # replica counts only: no pod needed
    now = datetime.now(UTC)
    # Matches this minute and the next, so the window cannot close during the test.
    window = f"{now.minute},{(now.minute + 1) % 60} * * * *"
    await set_scaling(
        catalog,
        SCHED,
        {
            "minInstances": 0,
            "maxInstances": 3,
            "scaleDownCooldown": 1,
            "schedules": [{"cron": window, "minInstances": 2}],
        },
    )

    def at(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return await replicas(catalog, SCHED) == count

        return check

    await until(at(2), "the schedule's floor of 2 replicas")
    closed = f"{(now.minute + 30) % 60} * * * *"
    await set_scaling(
        catalog,
        SCHED,
        {
            "minInstances": 0,
            "maxInstances": 3,
            "scaleDownCooldown": 1,
            "schedules": [{"cron": closed, "minInstances": 2}],
        },
    )
    await until(at(0), "down to zero once no window is open and no call comes")
    # Without scaling settings, preProvisionedConcurrency alone is a floor.
    await set_scaling(catalog, SCHED, None)
    await catalog.db.run(
        functions.update_function, SCHED, {"concurrency": {"preProvisionedConcurrency": 2}}, actor="test"
    )
    await until(at(2), "preProvisionedConcurrency's floor of 2 replicas")
    events = await scale_events(catalog, SCHED)
    assert [(e["from"], e["to"]) for e in events] == [(1, 2), (2, 0), (0, 2)], events
    assert "schedule" in events[0]["reason"]
    assert "preProvisionedConcurrency 2" in events[2]["reason"]
