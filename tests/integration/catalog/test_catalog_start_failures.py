"""Failed starts: recorded per (service, version), backed off exponentially with a cap, reset by
success, a redeploy or a new generation; and the per-service state the controller publishes."""

from __future__ import annotations

from typing import Any

import psycopg

from dormant_catalog import Catalog, SlotClaim
from dormant_catalog.pods import START_RETRY_CAP_S, START_RETRY_S

Register = Any
PY = ("dormant-python:1",)


async def claim(cat: Catalog, pod: str) -> SlotClaim | None:
    return await cat.claim_slot(pod, base_images=PY, platform_interfaces=["dormant/1"], lease_s=30)


async def failures(catalog_url: str, app: str) -> list[tuple[int, int, float, str]]:
    """(version, failures, seconds until retry, error) per failing version of ``app``."""
    async with await psycopg.AsyncConnection.connect(catalog_url) as conn:
        cur = await conn.execute(
            "SELECT version, failures, extract(epoch FROM retry_at - failed_at)::float8, last_error"
            " FROM start_failures WHERE app_name = %s ORDER BY version",
            (app,),
        )
        return [(int(r[0]), int(r[1]), float(r[2]), str(r[3])) for r in await cur.fetchall()]


async def expire_backoff(catalog_url: str, app: str) -> None:
    """Move the retry time into the past (instead of sleeping through it)."""
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        await conn.execute("UPDATE start_failures SET retry_at = now() WHERE app_name = %s", (app,))


async def fail_once(catalog: Catalog, catalog_url: str, app: str, pod: str = "pod-a") -> None:
    await expire_backoff(catalog_url, app)
    got = await claim(catalog, pod)
    assert got is not None and got.app_name == app
    assert await catalog.release_slot(pod, got.slot_id, error=f"ImportError: boom {pod}")


async def test_failed_starts_back_off_exponentially_up_to_a_cap(
    catalog: Catalog, catalog_url: str, register: Register
) -> None:
    await register(catalog, "broken")
    await catalog.deploy("broken", replicas=2)
    waits = []
    for attempt in range(12):
        await fail_once(catalog, catalog_url, "broken", pod=f"pod-{attempt % 3}")
        [(version, count, wait, error)] = await failures(catalog_url, "broken")
        assert (version, count, error) == (1, attempt + 1, f"ImportError: boom pod-{attempt % 3}")
        waits.append(round(wait, 1))
        # No pod, not even another one, may claim either slot of the version before its retry time.
        assert await claim(catalog, "pod-z") is None
    assert waits[:6] == [START_RETRY_S * 2**i for i in range(6)]
    assert waits[-1] == START_RETRY_CAP_S and max(waits) == START_RETRY_CAP_S
    status = await catalog.deployment_status("broken")
    assert status.state == "failed" and "(12 attempts): ImportError: boom pod-2" in status.reason


async def test_serving_a_redeploy_or_a_new_generation_resets_the_backoff(
    catalog: Catalog, catalog_url: str, register: Register
) -> None:
    await register(catalog, "flaky")
    await catalog.deploy("flaky")
    await fail_once(catalog, catalog_url, "flaky")
    await fail_once(catalog, catalog_url, "flaky")
    assert [f[1] for f in await failures(catalog_url, "flaky")] == [2]
    await expire_backoff(catalog_url, "flaky")
    got = await claim(catalog, "pod-b")
    assert got is not None
    assert await catalog.report_serving("pod-b", got.slot_id, got.generation)
    assert await failures(catalog_url, "flaky") == []  # serving resets it
    assert (await catalog.deployment_status("flaky")).state == "running"

    await catalog.release_slot("pod-b", got.slot_id)
    await fail_once(catalog, catalog_url, "flaky")
    assert await claim(catalog, "pod-c") is None
    await catalog.deploy("flaky")  # the same version again: a redeploy resets it
    assert await failures(catalog_url, "flaky") == []
    assert await claim(catalog, "pod-c") is not None

    v2 = await register(catalog, "flaky")
    await catalog.deploy("flaky", version=v2)  # moves the held slot: new generation of v2
    slot = (await catalog.list_slots("flaky"))[0]
    assert await catalog.release_slot("pod-c", slot.slot_id, error="v2 broken")
    assert [f[:2] for f in await failures(catalog_url, "flaky")] == [(2, 1)]
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        await conn.execute("UPDATE replica_slots SET generation = generation + 1 WHERE app_name = 'flaky'")
    assert await failures(catalog_url, "flaky") == []  # a new generation of the slot resets it


async def test_a_failed_switch_is_recorded_while_the_old_version_serves(
    catalog: Catalog, catalog_url: str, register: Register
) -> None:
    await register(catalog, "switch")
    await catalog.deploy("switch")
    got = await claim(catalog, "pod-a")
    assert got is not None
    assert await catalog.report_serving("pod-a", got.slot_id, got.generation)
    v2 = await register(catalog, "switch")
    await catalog.deploy("switch", version=v2)
    waits = [
        await catalog.record_start_failure("pod-a", got.slot_id, error="SyntaxError: v2") for _ in range(3)
    ]
    assert [round(w or 0) for w in waits] == [1, 2, 4]
    assert await catalog.record_start_failure("not-the-holder", got.slot_id, error="x") is None
    status = await catalog.deployment_status("switch")
    assert status.state == "failed" and "failed to start v2 (3 attempts): SyntaxError: v2" in status.reason
    assert (await catalog.list_slots("switch"))[0].last_error == "SyntaxError: v2"
    renewed = await catalog.renew_lease("pod-a", got.slot_id, lease_s=30)
    assert renewed is not None and (await catalog.list_slots("switch"))[0].last_error == "SyntaxError: v2"


async def test_service_state_says_what_exists_and_why_it_is_not_serving(
    catalog: Catalog, catalog_url: str, register: Register
) -> None:
    assert await catalog.service_state("ghost") is None
    await register(catalog, "svc", schema_definition={"functions": {"getUser": {}, "ping": {}}})
    state = await catalog.service_state("svc")
    assert state is not None
    assert state["state"] == "not-deployed" and state["reason"] == "svc is not deployed"
    assert state["versions"] == {
        "1": {"state": "not-deployed", "reason": "svc v1 is not deployed", "functions": 0}
    }
    assert state["functions"] == [["getUser", "ping"]]
    await register(catalog, "svc", schema_definition={"functions": {"getUser": {}, "ping": {}}})
    await register(catalog, "svc", schema_definition={"no": "functions"})
    await catalog.deploy("svc", version=2)
    await catalog.register_pod("pod-a", PY, ["dormant/1"])
    state = await catalog.service_state("svc")
    assert state is not None
    assert (state["latest"], state["live"], state["state"]) == (3, 2, "starting")
    assert state["reason"] == "svc v2 is starting: waiting for a pod to claim 1 of 1 slots"
    assert state["versions"]["2"]["functions"] == 0  # shared with v1
    assert "functions" not in state["versions"]["3"]  # not listed: callers claim nothing about them
    got = await claim(catalog, "pod-a")
    assert got is not None
    await catalog.release_slot("pod-a", got.slot_id, error="ModuleNotFoundError: No module named 'nope'")
    state = await catalog.service_state("svc")
    assert state is not None and state["state"] == "failed"
    assert state["reason"] == (
        "svc failed to start v2 (1 attempt): ModuleNotFoundError: No module named 'nope'"
    )
    assert state["versions"]["1"]["state"] == "not-deployed"
    await catalog.deploy("svc", version=2)
    got = await claim(catalog, "pod-a")
    assert got is not None and await catalog.report_serving("pod-a", got.slot_id, got.generation)
    state = await catalog.service_state("svc")
    assert state is not None and state["state"] == "serving"
    assert state["versions"]["2"]["reason"] == "svc v2 has 1/1 replicas serving"
    await catalog.deploy("svc", version=2, replicas=0)
    state = await catalog.service_state("svc")
    assert state is not None and (state["state"], state["reason"]) == (
        "stopped",
        "svc is scaled to 0 replicas",
    )
