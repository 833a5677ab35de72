"""``deployments.scale`` on a real database (issue 12, item 6): slots of the target version added after
the highest index and removed idle first, highest index first, serving ones left alone; audited; refused
while a rollout is in progress."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from dormant_catalog import Catalog
from dormant_catalog.audit import list_audit
from dormant_catalog.deployments import ScalingBlocked, scale

Register = Callable[..., Awaitable[int]]


async def test_scale_keeps_serving_slots_and_removes_idle_ones_first(
    catalog: Catalog, register: Register
) -> None:
    version = await register(catalog, "sc")
    await catalog.deploy("sc", version=version, replicas=2)
    assert await catalog.db.run(scale, "sc", 5, reason="test up", actor="t") == (2, 5)
    slots = await catalog.list_slots("sc")
    assert [s.slot_index for s in slots] == [0, 1, 2, 3, 4] and {s.version for s in slots} == {version}
    # A pod serves slot 3 (index 3): scaling down to 2 drops the idle slots 4, 2, 1 and keeps it.
    by_index = {s.slot_index: s for s in slots}
    held = await catalog.claim_slot(
        "pod-a", base_images=("dormant-python:1",), platform_interfaces=("dormant/1",), lease_s=30
    )
    assert held is not None
    await catalog.db.run(scale, "sc", 5, reason="noop", actor="t")
    claimed = next(s for s in await catalog.list_slots("sc") if s.pod_id == "pod-a")
    assert await catalog.report_serving("pod-a", claimed.slot_id, claimed.generation)
    assert await catalog.db.run(scale, "sc", 2, reason="test down", actor="t") == (5, 2)
    kept = await catalog.list_slots("sc")
    assert claimed.slot_id in {s.slot_id for s in kept}
    idle_kept = [s.slot_index for s in kept if s.slot_id != claimed.slot_id]
    assert idle_kept == [min(i for i in by_index if i != claimed.slot_index)]
    assert (await catalog.get_deployment("sc")).replicas == 2  # type: ignore[union-attr]
    assert await catalog.db.run(scale, "sc", 0, reason="to zero", actor="t") == (2, 0)
    assert await catalog.list_slots("sc") == []
    audit = [r.detail for r in await catalog.db.run(list_audit, "sc") if r.action == "scale"]
    assert [(a["from"], a["to"], a["reason"]) for a in audit] == [
        (2, 5, "test up"),
        (5, 2, "test down"),
        (2, 0, "to zero"),
    ]  # the no-op (5 -> 5) is not an event
    assert audit[-1] == {"version": version, "from": 2, "to": 0, "reason": "to zero"}


async def test_no_scaling_during_a_rollout(catalog: Catalog, register: Register) -> None:
    v1 = await register(catalog, "sr")
    v2 = await register(catalog, "sr")
    await catalog.deploy("sr", version=v1, replicas=1)
    await catalog.start_rollout("sr", v2, {"strategy": "canary", "force": True}, actor="ann")
    with pytest.raises(ScalingBlocked, match="rollout"):
        await catalog.db.run(scale, "sr", 3, reason="load", actor="t")
    assert (await catalog.get_deployment("sr")).replicas == 1  # type: ignore[union-attr]
