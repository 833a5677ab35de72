"""The catalog-scale simulation (``bench/catalog_scale.py``, issue 14 item 6) at a small size on the real
catalog: simulated pods (the sidecar's own ``SlotWaker`` and ``LeaseKeeper`` on the catalog's claim,
renewal and LISTEN code) start at once and claim every slot exactly once, keep their leases, all see a
NOTIFY, follow redeploys, and give every slot back. The full-size figures are in the sizing guide."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from catalog_scale import ScaleConfig, simulate


def _clean(ownership: dict[str, Any], held: int) -> None:
    assert ownership == {
        "held": held,
        "pods_holding_two_or_more": 0,
        "slots_held_twice": 0,
        "slots_claimed_by_two_pods": 0,
        "views_agree": True,
    }


async def test_every_slot_is_claimed_once_by_one_pod(catalog_url: str) -> None:
    config = ScaleConfig(
        deployments=25, replicas=2, lease_s=3.0, steady_s=3.0, probes=2, redeploys=3, fill_timeout_s=90.0
    )
    assert config.slots == 50 and config.pod_count == 52  # one pod per slot, two spare
    result = await simulate(catalog_url, config, quiet=True)

    fill = result["fill"]
    assert fill["slots_held"] == 50 and fill["slots_unassigned"] == 0
    assert fill["all_held_s"] is not None and fill["all_serving_s"] is not None
    _clean(result["ownership_after_fill"], 50)
    assert result["slots_claimed_per_pod_max"] == 1  # nobody lost a slot and claimed another

    steady = result["steady"]
    assert steady["pods_holding"] == 50 and steady["leases_lost"] == 0
    assert steady["catalog_calls_per_s"]["renew_lease"] > 0  # the lease keepers renewed

    fanout = result["fanout"]
    assert [p["delivered"] for p in fanout["probes"]] == [52, 52]  # every pod's LISTEN saw each NOTIFY

    redeploys = result["redeploy"]["runs"]
    assert [(r["holders"], r["switched"]) for r in redeploys] == [(2, 2)] * 3
    _clean(result["ownership_after_redeploys"], 50)

    stop = result["stop"]
    assert stop["pods_not_stopped"] == 0 and stop["held"] == 0 and stop["slots"] == 50
    assert result["leases_lost_total"] == 0


async def test_fewer_pods_than_slots_hold_one_each(catalog_url: str) -> None:
    config = ScaleConfig(
        deployments=10,
        replicas=2,
        pods=8,
        lease_s=3.0,
        steady_s=1.0,
        probes=1,
        redeploys=0,
        fill_timeout_s=90.0,
    )
    result = await simulate(catalog_url, config, quiet=True)
    assert result["fill"]["slots_held"] == 8 and result["fill"]["slots_unassigned"] == 12
    _clean(result["ownership_after_fill"], 8)
    assert result["slots_claimed_per_pod_max"] == 1
    assert result["stop"]["pods_not_stopped"] == 0 and result["stop"]["held"] == 0
