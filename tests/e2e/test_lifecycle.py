"""Pods over time: redeploys move calls to a new runtime process; a killed pod loses its slot."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from dormant import Client
from dormant_catalog import open_catalog
from dormant_local import MosquittoProcess

from .mesh import PROBE, Mesh, copy_service, running_mesh


async def _echo(mesh: Mesh, **kwargs: object) -> dict[str, object]:
    async with Client(mesh.broker_url) as client:
        result: dict[str, object] = await client.call(
            "probe-service", "echo", {"text": "hi"}, timeout=30, **kwargs
        )
        return result


def _release(service_dir: Path, release: str) -> None:
    module = service_dir / "probe.py"
    module.write_text(module.read_text().replace('RELEASE = "one"', f'RELEASE = "{release}"'))


async def test_redeploy_moves_calls_to_v2_in_a_new_runtime_process(mesh: Mesh, tmp_path: Path) -> None:
    service_dir = copy_service(PROBE, tmp_path / "probe")
    service, v1 = await mesh.publish(service_dir)
    await mesh.deploy(service, v1, replicas=1)
    mesh.start_pod("pod-a")
    await mesh.wait_serving(service)
    before = await _echo(mesh)
    assert before["release"] == "one" and before["version"] == v1

    _release(service_dir, "two")
    _, v2 = await mesh.publish(service_dir)
    assert v2 == v1 + 1
    await mesh.deploy(service, v2, replicas=1)
    await mesh.wait_serving(service, version=v2)
    # Calls keep being answered while the slot moves; once moved, every call is v2's.
    seen: list[dict[str, object]] = []
    give_up = asyncio.get_running_loop().time() + 60  # a busy machine loads the new runtime slowly
    while asyncio.get_running_loop().time() < give_up:
        seen.append(await _echo(mesh))
        if seen[-1]["version"] == v2:
            break
        await asyncio.sleep(0.05)
    after = seen[-1]
    assert after["release"] == "two" and after["version"] == v2
    assert after["pid"] != before["pid"]  # a new runtime process, not a reload
    assert mesh.pods["pod-a"].poll() is None  # ... in the same pod
    for _ in range(5):
        assert (await _echo(mesh))["version"] == v2
    assert await _exits(int(str(before["pid"])))  # the v1 runtime drained and exited


async def test_a_serving_pod_follows_a_redeploy_without_waiting_for_its_lease(
    mesh: Mesh, tmp_path: Path
) -> None:
    service_dir = copy_service(PROBE, tmp_path / "probe")
    service, v1 = await mesh.publish(service_dir)
    await mesh.deploy(service, v1, replicas=1)
    mesh.start_pod("pod-slow-lease", lease_s=60.0)  # renews every 20 s
    await mesh.wait_serving(service)
    _release(service_dir, "three")
    _, v2 = await mesh.publish(service_dir)
    await mesh.deploy(service, v2, replicas=1)
    # The NOTIFY on the deploy wakes the lease keeper at once; its timer alone would take 20 s.
    await mesh.wait_serving(service, version=v2, timeout=60.0)
    assert (await _echo(mesh, version=v2))["release"] == "three"


async def test_same_content_publishes_no_new_version(mesh: Mesh) -> None:
    _, first = await mesh.publish(PROBE)
    _, again = await mesh.publish(PROBE)
    assert again == first


async def test_a_killed_pod_loses_its_slot_and_calls_succeed_again(mesh: Mesh) -> None:
    service, version = await mesh.publish(PROBE)
    await mesh.deploy(service, version, replicas=1)
    mesh.start_pod("pod-1")
    mesh.start_pod("pod-2")
    await mesh.wait_serving(service)
    holder = await _slot_holder(mesh, service)
    assert holder in ("pod-1", "pod-2")
    served_by = (await _echo(mesh))["pid"]

    mesh.pods[holder].send_signal(signal.SIGKILL)
    mesh.pods[holder].wait(5)
    other = "pod-2" if holder == "pod-1" else "pod-1"
    for _ in range(200):
        if await _slot_holder(mesh, service) == other:
            break
        await asyncio.sleep(0.05)
    assert await _slot_holder(mesh, service) == other
    await mesh.wait_serving(service)
    result = await _echo(mesh)
    assert result["pid"] != served_by
    assert await _exits(int(str(served_by)))  # the orphaned runtime saw its sidecar die and left


async def test_sigterm_drains_and_gives_the_slot_back(mesh: Mesh) -> None:
    service, version = await mesh.publish(PROBE)
    await mesh.deploy(service, version, replicas=1)
    pod = mesh.start_pod("pod-t")
    await mesh.wait_serving(service)
    runtime_pid = int(str((await _echo(mesh))["pid"]))
    async with Client(mesh.broker_url, timeout=10) as client:
        slow = asyncio.create_task(client.call("probe-service", "sleep", {"ms": 1000}))
        await asyncio.sleep(0.3)
        pod.send_signal(signal.SIGTERM)
        assert await slow == {}  # the call in flight finished during the drain
    assert await asyncio.to_thread(pod.wait, 15) == 0
    assert not _alive(runtime_pid)
    assert await _slot_holder(mesh, service) is None


async def _slot_holder(mesh: Mesh, service: str) -> str | None:
    catalog = await open_catalog(mesh.catalog_url)
    try:
        slots = await catalog.list_slots(service)
    finally:
        await catalog.close()
    return slots[0].pod_id if slots else None


async def _exits(pid: int, within: float = 15.0) -> bool:
    """True once ``pid`` is gone (checked every 50 ms, for at most ``within`` seconds)."""
    for _ in range(int(within / 0.05)):
        if not _alive(pid):
            return True
        await asyncio.sleep(0.05)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_the_runtime_resubscribes_after_a_broker_restart(
    fresh_broker: MosquittoProcess, catalog_url: str, tmp_path: Path
) -> None:
    with running_mesh(fresh_broker.url, catalog_url, tmp_path) as mesh:
        service, version = await mesh.publish(PROBE)
        await mesh.deploy(service, version, replicas=1)
        mesh.start_pod("pod-r")
        await mesh.wait_serving(service)
        pid = (await _echo(mesh))["pid"]
        await fresh_broker.restart()
        await mesh.wait_serving(service, timeout=60.0)
        after = await _echo(mesh)
        assert after["pid"] == pid  # the same runtime process reconnected; nothing was restarted
        assert mesh.pods["pod-r"].poll() is None
