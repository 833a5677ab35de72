"""The claim protocol on a real database: racing pods, leases, takeovers, redeploys, filtering."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import pytest

from dormant_catalog import Catalog, InvalidCatalogRequest, NotFoundInCatalog, SlotClaim, open_catalog

Register = Callable[..., Awaitable[int]]
PY = ("dormant-python:1",)
NODE = ("dormant-node:1",)


async def claim(
    cat: Catalog,
    pod: str,
    *,
    lease_s: float = 1.0,
    bases: Sequence[str] = PY,
    ifaces: Sequence[str] = ("dormant/1",),
) -> SlotClaim | None:
    return await cat.claim_slot(pod, base_images=bases, platform_interfaces=ifaces, lease_s=lease_s)


async def test_eight_pods_race_for_three_slots(
    catalog: Catalog, catalog_url: str, register: Register
) -> None:
    contenders = [await open_catalog(catalog_url, migrate=False, max_size=1) for _ in range(8)]
    try:
        for round_ in range(20):
            app = f"race-{round_}"
            await register(catalog, app)
            await catalog.deploy(app, replicas=3)
            start = asyncio.Event()

            async def contend(pod: str, cat: Catalog, start: asyncio.Event = start) -> SlotClaim | None:
                await start.wait()
                return await claim(cat, pod, lease_s=30)

            tasks = [asyncio.create_task(contend(f"p{round_}-{i}", cat)) for i, cat in enumerate(contenders)]
            await asyncio.sleep(0)
            start.set()
            results = await asyncio.gather(*tasks)
            claims = {f"p{round_}-{i}": c for i, c in enumerate(results) if c is not None}
            assert len(claims) == 3, results
            assert len({c.slot_id for c in claims.values()}) == 3
            assert {c.app_name for c in claims.values()} == {app}
            slots = await catalog.list_slots(app)
            assert {s.slot_id: s.pod_id for s in slots} == {c.slot_id: pod for pod, c in claims.items()}
            # Free the pods' slots so later rounds only find their own deployment's slots.
            await catalog.deploy(app, replicas=0)
    finally:
        for cat in contenders:
            await cat.close()


async def test_claim_carries_what_the_pod_needs(catalog: Catalog, register: Register) -> None:
    assert await claim(catalog, "idle") is None
    await register(catalog, "users")
    await catalog.deploy("users")
    await catalog.register_pod("pod-a", PY, ["dormant/1"])
    got = await claim(catalog, "pod-a", lease_s=5)
    assert got is not None
    version = await catalog.get_version("users", 1)
    assert version is not None
    assert (got.app_name, got.slot_index, got.version, got.generation, got.live) == ("users", 0, 1, 1, True)
    assert (got.app_layer_image, got.base_image, got.interface_hash) == (
        version.app_layer_image,
        version.base_image,
        version.interface_hash,
    )
    assert 3 < (got.lease_expires_at - datetime.now(UTC)).total_seconds() <= 6
    assert [p.state for p in await catalog.list_pods()] == ["serving"]
    assert await claim(catalog, "pod-b") is None
    with pytest.raises(InvalidCatalogRequest):
        await claim(catalog, "pod-b", lease_s=0)


async def test_expired_lease_is_taken_over(catalog: Catalog, register: Register) -> None:
    await register(catalog, "svc")
    await catalog.deploy("svc")
    first = await claim(catalog, "pod-a", lease_s=0.6)
    assert first is not None
    assert await claim(catalog, "pod-b", lease_s=0.6) is None
    await asyncio.sleep(0.8)
    second = await claim(catalog, "pod-b", lease_s=5)
    assert second is not None and second.slot_id == first.slot_id
    assert await catalog.renew_lease("pod-a", first.slot_id, lease_s=1) is None
    assert not await catalog.release_slot("pod-a", first.slot_id)
    renewed = await catalog.renew_lease("pod-b", first.slot_id, lease_s=1)
    assert renewed is not None and renewed.version == 1
    assert [s.pod_id for s in await catalog.list_slots("svc")] == ["pod-b"]


async def test_renew_keeps_an_expired_lease_nobody_took(catalog: Catalog, register: Register) -> None:
    await register(catalog, "svc")
    await catalog.deploy("svc")
    got = await claim(catalog, "pod-a", lease_s=0.3)
    assert got is not None
    await asyncio.sleep(0.5)
    assert not (await catalog.list_slots("svc"))[0].lease_live
    renewed = await catalog.renew_lease("pod-a", got.slot_id, lease_s=5)
    assert renewed is not None and renewed.lease_expires_at > got.lease_expires_at
    assert (await catalog.list_slots("svc"))[0].lease_live


async def test_a_restarted_pod_gets_its_own_slot_back(catalog: Catalog, register: Register) -> None:
    await register(catalog, "svc")
    await catalog.deploy("svc")
    got = await claim(catalog, "pod-a", lease_s=30)
    assert got is not None
    assert await claim(catalog, "pod-b", lease_s=30) is None
    again = await claim(catalog, "pod-a", lease_s=30)
    assert again is not None and again.slot_id == got.slot_id


async def test_release_frees_the_slot(catalog: Catalog, register: Register) -> None:
    await register(catalog, "svc")
    await catalog.deploy("svc")
    got = await claim(catalog, "pod-a", lease_s=30)
    assert got is not None
    assert await catalog.release_slot("pod-a", got.slot_id)
    assert (await catalog.list_slots("svc"))[0].pod_id is None
    other = await claim(catalog, "pod-b", lease_s=30)
    assert other is not None and other.slot_id == got.slot_id


async def test_redeploy_bumps_generation_and_renew_reports_it(catalog: Catalog, register: Register) -> None:
    await register(catalog, "svc")
    await register(catalog, "svc")
    await catalog.deploy("svc", version=1, replicas=2)
    got = await claim(catalog, "pod-a", lease_s=5)
    assert got is not None and got.target == (1, 1, True)
    renewed = await catalog.renew_lease("pod-a", got.slot_id, lease_s=5)
    assert renewed is not None and renewed.target == (1, 1, True)

    deployment = await catalog.deploy("svc", replicas=3, actor="alice")  # latest = 2
    assert (deployment.target_version, deployment.replicas, deployment.deployed_by) == (2, 3, "alice")
    renewed = await catalog.renew_lease("pod-a", got.slot_id, lease_s=5)
    assert renewed is not None
    assert renewed.target == (2, 2, True)
    version2 = await catalog.get_version("svc", 2)
    assert version2 is not None and renewed.app_layer_image == version2.app_layer_image
    assert [(s.slot_index, s.version, s.generation) for s in await catalog.list_slots("svc")] == [
        (0, 2, 2),
        (1, 2, 2),
        (2, 2, 1),
    ]
    alias = await catalog.get_alias("svc", "live")
    assert alias is not None and alias.weights == {2: 100} and alias.primary == 2

    await catalog.deploy("svc", version=2, replicas=3)  # same version: nothing to reload
    assert [s.generation for s in await catalog.list_slots("svc")] == [2, 2, 1]
    actions = [(a.action, a.detail.get("version")) for a in await catalog.list_audit("svc")]
    assert actions[-2:] == [("set-alias", None), ("deploy", 2)]
    assert actions.count(("deploy", 2)) == 2


async def test_scale_down_removes_the_highest_slots(catalog: Catalog, register: Register) -> None:
    await register(catalog, "svc")
    await catalog.deploy("svc", replicas=3)
    claims = [await claim(catalog, f"pod-{i}", lease_s=30) for i in range(3)]
    by_index = {c.slot_index: c for c in claims if c is not None}
    assert sorted(by_index) == [0, 1, 2]
    await catalog.deploy("svc", replicas=1)
    assert [s.slot_index for s in await catalog.list_slots("svc")] == [0]
    assert await catalog.renew_lease("pod-0", by_index[0].slot_id, lease_s=1) is not None
    for index in (1, 2):
        holder = next(f"pod-{i}" for i, c in enumerate(claims) if c is not None and c.slot_index == index)
        assert await catalog.renew_lease(holder, by_index[index].slot_id, lease_s=1) is None


async def test_pods_only_claim_what_they_can_run(catalog: Catalog, register: Register) -> None:
    await register(catalog, "on-node", base_image="dormant-node:1")
    await register(catalog, "needs-v2", platform_interface="dormant/2")
    await catalog.deploy("on-node")
    await catalog.deploy("needs-v2")
    assert await claim(catalog, "py-pod") is None
    node = await claim(catalog, "node-pod", bases=NODE)
    assert node is not None and node.app_name == "on-node" and node.base_image == "dormant-node:1"
    assert await claim(catalog, "py-pod", ifaces=("dormant/1",)) is None
    modern = await claim(catalog, "py2-pod", ifaces=("dormant/1", "dormant/2"))
    assert modern is not None and modern.app_name == "needs-v2" and modern.platform_interface == "dormant/2"


async def test_deploy_of_unknown_things_fails(catalog: Catalog, register: Register) -> None:
    with pytest.raises(NotFoundInCatalog):
        await catalog.deploy("ghost")
    await register(catalog, "real")
    with pytest.raises(NotFoundInCatalog):
        await catalog.deploy("real", version=2)
    with pytest.raises(InvalidCatalogRequest):
        await catalog.deploy("real", replicas=-1)
    assert await catalog.get_deployment("real") is None
    assert await catalog.list_slots("real") == []


async def test_deployment_status_explains_why_nothing_runs(catalog: Catalog, register: Register) -> None:
    with pytest.raises(NotFoundInCatalog):
        await catalog.deployment_status("ghost")
    await register(catalog, "svc", base_image="dormant-node:1")
    status = await catalog.deployment_status("svc")
    assert (status.state, status.reason) == ("stopped", "not deployed")
    await catalog.deploy("svc", replicas=2)
    await catalog.register_pod("py-pod", PY, ["dormant/1"])
    status = await catalog.deployment_status("svc")
    assert status.state == "pending"
    assert status.reason == "no registered pod provides base runtime dormant-node:1"
    await catalog.register_pod("node-old", NODE, ["dormant/0"])
    status = await catalog.deployment_status("svc")
    assert "no registered pod provides platform interface dormant/1" in status.reason
    await catalog.register_pod("node-pod", NODE, ["dormant/1"])
    assert (await catalog.deployment_status("svc")).reason == "waiting for a pod to claim 2 of 2 slots"
    got = await claim(catalog, "node-pod", bases=NODE, lease_s=30)
    assert got is not None
    status = await catalog.deployment_status("svc")
    assert status.serving == 0 and "(1 loading)" in status.reason  # claimed is not yet serving
    assert await catalog.report_serving("node-pod", got.slot_id, got.generation)
    assert not await catalog.report_serving("someone-else", got.slot_id, got.generation)
    status = await catalog.deployment_status("svc")
    assert (status.serving, status.replicas) == (1, 2)
    assert status.reason == "waiting for a pod: all 1 pods that can run dormant-node:1 are busy"
    assert await catalog.release_slot("node-pod", got.slot_id, error="layer digest mismatch")
    status = await catalog.deployment_status("svc")
    assert status.state == "failed"
    assert "pod node-pod failed to start v1 (1 attempt): layer digest mismatch" in status.reason
    assert await claim(catalog, "node-pod", bases=NODE, lease_s=30) is None  # backing off
    await catalog.deploy("svc", replicas=2)  # a redeploy starts afresh
    await catalog.register_pod("node-pod-2", NODE, ["dormant/1"])
    first = await claim(catalog, "node-pod", bases=NODE, lease_s=30)
    second = await claim(catalog, "node-pod-2", bases=NODE, lease_s=30)
    assert first is not None and second is not None
    assert await catalog.report_serving("node-pod", first.slot_id, first.generation)
    assert await catalog.report_serving("node-pod-2", second.slot_id, second.generation)
    status = await catalog.deployment_status("svc")
    assert (status.state, status.serving, status.reason) == ("running", 2, "2/2 replicas serving v1")
    await register(catalog, "svc", base_image="dormant-node:1")
    await catalog.deploy("svc", version=2, replicas=2)  # the slots move: nobody serves v2 yet
    status = await catalog.deployment_status("svc")
    assert (status.state, status.serving) == ("pending", 0)
    renewed = await catalog.renew_lease("node-pod", first.slot_id, lease_s=30)
    assert renewed is not None and renewed.version == 2
    assert await catalog.report_serving("node-pod", first.slot_id, renewed.generation)
    assert (await catalog.deployment_status("svc")).serving == 1
    await catalog.deregister_pod("py-pod")
    assert {p.pod_id: p.state for p in await catalog.list_pods()}["py-pod"] == "gone"
    await catalog.deploy("svc", replicas=0)
    assert (await catalog.deployment_status("svc")).state == "stopped"


async def test_stale_pods_do_not_count(catalog: Catalog, register: Register) -> None:
    await register(catalog, "svc")
    await catalog.deploy("svc")
    await catalog.register_pod("pod-a", PY, ["dormant/1"])
    assert (await catalog.deployment_status("svc")).reason.startswith("waiting for a pod")
    await asyncio.sleep(0.3)
    status = await catalog.deployment_status("svc", pod_ttl_s=0.2)
    assert status.reason == "no registered pod provides base runtime dormant-python:1"


async def test_slots_that_failed_are_claimed_last(catalog: Catalog, register: Register) -> None:
    await register(catalog, "a-broken")
    await register(catalog, "b-healthy")
    await catalog.deploy("a-broken")
    await catalog.deploy("b-healthy")
    got = await claim(catalog, "pod-a", lease_s=30)
    assert got is not None and got.app_name == "a-broken"
    # Released without backing off (this pod could not run it; another may): claimed last, not never.
    assert await catalog.release_slot("pod-a", got.slot_id, error="boom", backoff=False)
    other = await claim(catalog, "pod-a", lease_s=30)
    assert other is not None and other.app_name == "b-healthy"
    again = await claim(catalog, "pod-b", lease_s=30)
    assert again is not None and again.app_name == "a-broken"
    renewed = await catalog.renew_lease("pod-b", again.slot_id, lease_s=30)
    assert renewed is not None
    assert (await catalog.list_slots("a-broken"))[0].last_error == "boom"  # a lease alone is not serving
    assert await catalog.report_serving("pod-b", again.slot_id, renewed.generation)
    assert (await catalog.list_slots("a-broken"))[0].last_error is None  # serving clears the failure
