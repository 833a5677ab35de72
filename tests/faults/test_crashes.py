"""Runtimes killed or frozen mid-call: every call is answered, and no effect happens twice."""

from __future__ import annotations

import asyncio
import os
import signal

from dormant import Client

from .ledger import Ledger, children_of, doubled, steady_load

ROUNDS = 20
IN_FLIGHT = 20


async def test_runtime_sigkilled_mid_call_twenty_times(ledger: Ledger) -> None:
    await ledger.setup(replicas=1)
    ledger.start_pod("pod-1")
    await ledger.mesh.wait_serving("ledger-service")
    all_ids: list[str] = []
    restarts = 0
    async with Client(ledger.mesh.broker_url, timeout=60) as client:
        serving_pid = (await client.call("ledger-service", "record", {"item": "warm-up"}))["pid"]
        for round_ in range(ROUNDS):
            ids = [f"kill-{round_}-{i}" for i in range(IN_FLIGHT)]
            all_ids += ids
            calls = [
                asyncio.create_task(
                    client.call("ledger-service", "record", {"item": call_id, "ms": 600}, call_id=call_id)
                )
                for call_id in ids
            ]
            while sum(ledger.runs()[i] for i in ids) < IN_FLIGHT:  # noqa: ASYNC110 - polls a file
                await asyncio.sleep(0.01)
            os.kill(serving_pid, signal.SIGKILL)
            restarts += 1
            answers = await asyncio.gather(*calls)
            assert [a["item"] for a in answers] == ids
            pids = {a["pid"] for a in answers}
            assert serving_pid not in pids  # answered by the runtime that replaced the killed one
            serving_pid = pids.pop()
    effects = await ledger.effects()
    assert doubled(effects, all_ids) == {}
    assert all(effects[i] == 1 for i in all_ids)
    runs = ledger.runs()
    print(
        f"\n{len(all_ids)} calls, {restarts} runtime kills, {sum(runs[i] for i in all_ids)} handler runs, "
        f"{sum(effects[i] for i in all_ids)} effects"
    )


async def test_a_frozen_pod_has_its_calls_served_elsewhere(ledger: Ledger) -> None:
    await ledger.setup(replicas=2)
    for pod in ("pod-1", "pod-2", "pod-spare"):
        ledger.start_pod(pod)
    await ledger.mesh.wait_serving("ledger-service")
    for _ in range(100):  # until both replicas serve
        status = await _status(ledger)
        if status == 2:
            break
        await asyncio.sleep(0.05)
    holders = [p for p in ("pod-1", "pod-2", "pod-spare") if await _holds_slot(ledger, p)]
    frozen_pod = holders[0]
    pod = ledger.mesh.pods[frozen_pod]
    frozen = [pod.pid, *children_of(pod.pid)]

    async def partition() -> None:
        await asyncio.sleep(2)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        await asyncio.sleep(6)
        for pid in frozen:
            os.kill(pid, signal.SIGCONT)

    cut = asyncio.create_task(partition())
    result = await steady_load(ledger.mesh.broker_url, rate=100, duration=10, prefix="part", timeout=45, ms=5)
    await cut
    effects = await ledger.effects()
    print(f"\npartition: {result.summary()}, effects {sum(effects[i] for i in result.ok)}")
    assert result.failed == {}
    assert doubled(effects, result.ok) == {}
    assert all(effects[i] == 1 for i in result.ok)


async def _status(ledger: Ledger) -> int:
    from dormant_catalog import open_catalog

    async with await open_catalog(ledger.mesh.catalog_url) as catalog:
        return (await catalog.deployment_status("ledger-service")).serving


async def _holds_slot(ledger: Ledger, pod_id: str) -> bool:
    from dormant_catalog import open_catalog

    async with await open_catalog(ledger.mesh.catalog_url) as catalog:
        return any(s.pod_id == pod_id for s in await catalog.list_slots("ledger-service"))
