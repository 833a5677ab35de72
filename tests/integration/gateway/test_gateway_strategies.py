"""Rollout strategies through ``POST /api/v1/deployments`` on a real gateway, mesh and controller: the
seed's request bodies start the rollouts ``dormant deploy --strategy`` starts; a failing canary is
rolled back as the CLI's is; blue-green switches only after its minimum samples; promote and
rollback endpoints; unknown or bad settings are a 400 naming the field."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from gw_helpers import ROOT, GatewayProcess, new_gateway

from dormant_catalog import open_catalog
from dormant_catalog.rollouts import parse_config
from dormant_local import MosquittoProcess

if str(ROOT / "tests" / "integration" / "rollouts") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "integration" / "rollouts"))

from e2e.mesh import Mesh, clear_retained, running_mesh
from rollout_helpers import (
    SERVICE,
    call_versions,
    publish_version,
    start_controller,
    steady_calls,
    wait_routes,
)

API = "/api/v1"


@pytest_asyncio.fixture
async def mesh(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> AsyncIterator[Mesh]:
    with running_mesh(broker.url, catalog_url, tmp_path) as m:
        yield m
    await clear_retained(broker.url, [SERVICE])


@pytest_asyncio.fixture
async def gateway(mesh: Mesh, tmp_path: Path) -> AsyncIterator[GatewayProcess]:
    process = new_gateway(mesh, tmp_path, "gw-strategies")
    try:
        await process.start()
        yield process
    finally:
        process.stop()


async def _two_versions(mesh: Mesh, tmp_path: Path, **v2: int) -> tuple[int, int]:
    """v1 live on one slot, v2 published and approved; two pods and a controller."""
    v1 = await publish_version(mesh, tmp_path)
    second = await publish_version(mesh, tmp_path, **v2)
    await mesh.deploy(SERVICE, v1, replicas=1)
    mesh.start_pod("pod-a")
    mesh.start_pod("pod-b")
    mesh.pods["controller"] = start_controller(mesh)
    await mesh.wait_serving(SERVICE)
    await wait_routes(mesh.broker_url, {v1: 100})
    return v1, second


async def _wait_rollout(
    http: httpx.AsyncClient, done: Any, *, timeout: float = 60.0, what: str = ""
) -> dict[str, Any]:
    """GET the deployment until ``done(rollout)``; the rollout it shows then."""
    end = time.monotonic() + timeout
    while True:
        response = await http.get(f"{API}/deployments/{SERVICE}")
        assert response.status_code == 200, response.text
        rollout = response.json()["rollout"]
        if rollout is not None and done(rollout):
            return dict(rollout)
        if time.monotonic() > end:
            raise AssertionError(f"rollout not {what} after {timeout}s: {rollout}")
        await asyncio.sleep(0.1)


async def test_a_failing_canary_started_over_the_api_is_rolled_back_as_the_clis(
    mesh: Mesh, gateway: GatewayProcess, tmp_path: Path
) -> None:
    v1, v2 = await _two_versions(mesh, tmp_path, fail_every=5)
    config = {
        "canaryPercentage": 30,
        "canaryDuration": "PT5S",
        "rollbackOnErrorRate": 0.05,
        "rollbackOnLatencyP99": 1000,
        "minSamples": 10,
    }
    stop = asyncio.Event()
    load = asyncio.create_task(steady_calls(mesh.broker_url, stop))
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=gateway.headers("operator"), timeout=30
    ) as http:
        started = await http.post(
            f"{API}/deployments",
            json={"functionName": SERVICE, "version": f"v{v2}", "strategy": "Canary", "config": config},
        )
        assert started.status_code == 201, started.text
        rollout = started.json()["rollout"]
        assert (rollout["strategy"], rollout["fromVersion"], rollout["toVersion"]) == ("canary", v1, v2)
        assert rollout["state"] == "running" and rollout["createdBy"] == "tester"
        # The stored configuration is the one the CLI's flags give (--steps 30,100 --interval PT5S ...).
        cli = {
            "strategy": "canary",
            "increments": [30, 100],
            "stepDuration": "PT5S",
            "minSamples": 10,
            "rollbackThresholds": {"errorRate": 0.05, "latencyP99Ms": 1000},
        }
        assert rollout["config"] == parse_config(cli, from_version=v1, to_version=v2).to_json()
        done = await _wait_rollout(
            http, lambda r: r["state"] in ("succeeded", "rolled-back"), what="finished"
        )
        await wait_routes(mesh.broker_url, {v1: 100})
        stop.set()
        await load
        print(f"failing canary over the API: {done['state']} at step {done['step'] + 1}: {done['reason']}")
        assert done["state"] == "rolled-back" and done["step"] == 0, done
        assert "error rate" in (done["reason"] or "")
        deployment = (await http.get(f"{API}/deployments/{SERVICE}")).json()
        assert deployment["version"] == v1 and deployment["rollout"]["progress"] is None
    assert set(await call_versions(mesh.broker_url, 200)) == {v1}
    async with await open_catalog(mesh.catalog_url) as catalog:
        assert (await catalog.get_alias(SERVICE)).weights == {v1: 100}  # type: ignore[union-attr]
        actions = [a.action for a in await catalog.list_audit(SERVICE)]
    assert "rollout-start" in actions and "rollback" in actions


async def _invoke_v(http: httpx.AsyncClient, version: int, n: int) -> None:
    """``n`` test calls to ``version`` itself (its version topic), as blue-green testers make them."""
    for i in range(n):
        answer = await http.post(
            f"{API}/functions/{SERVICE}.echo/invoke", params={"version": str(version)}, json={"text": f"t{i}"}
        )
        assert answer.status_code == 200 and answer.headers["x-dormant-version"] == str(version), answer.text


async def test_blue_green_over_the_api_waits_for_its_minimum_samples(
    mesh: Mesh, gateway: GatewayProcess, tmp_path: Path
) -> None:
    v1, v2 = await _two_versions(mesh, tmp_path)
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin"), timeout=30) as http:
        started = await http.post(
            f"{API}/deployments",
            json={
                "functionName": SERVICE,
                "version": v2,
                "strategy": "BlueGreen",
                "config": {
                    "testDuration": "PT1S",
                    "switchType": "Instant",
                    "keepBlue": "PT30S",
                    "minSamples": 8,
                },
            },
        )
        assert started.status_code == 201, started.text
        assert started.json()["rollout"]["strategy"] == "blue-green"
        await mesh.wait_serving(SERVICE, version=v2, timeout=60)
        await _invoke_v(http, v2, 3)
        # The controller has judged the test phase after testDuration on green's 3 calls: it waits.
        waiting = await _wait_rollout(
            http,
            lambda r: (
                ("3 of 8 calls needed" in (r["progress"] or "") and "before the switch" in r["progress"])
                or r["step"] > 0
                or r["state"] != "running"
            ),
            what="waiting for samples after its test duration",
        )
        assert waiting["state"] == "running" and waiting["step"] == 0 and waiting["percent"] == 0, waiting
        async with await open_catalog(mesh.catalog_url) as catalog:
            weights = (await catalog.get_alias(SERVICE)).weights  # type: ignore[union-attr]
        assert weights[v1] == 100 and weights.get(v2, 0) == 0, weights
        await _invoke_v(http, v2, 5)
        switched = await _wait_rollout(
            http, lambda r: r["step"] == 1 or r["state"] != "running", what="switched"
        )
        assert switched["numbers"]["step1"]["calls"] >= 8, switched["numbers"]
        # Green then serves everyone; it is judged at 100 % (on live traffic) before it is done.
        stop = asyncio.Event()
        load = asyncio.create_task(steady_calls(mesh.broker_url, stop, rate=20.0))
        try:
            done = await _wait_rollout(http, lambda r: r["state"] != "running", what="succeeded")
        finally:
            stop.set()
            result = await load
        assert done["state"] == "succeeded", done
        assert result.failed == [] and not result.errors, result
        await wait_routes(mesh.broker_url, {v2: 100})
        # Blue is kept (keepBlue): the rollback endpoint switches back at once, as `dormant rollback`.
        back = await http.post(f"{API}/deployments/{SERVICE}/rollback", json={})
        assert back.status_code == 200, back.text
        assert back.json()["rolledBackFrom"] == v2 and back.json()["rollout"]["state"] == "rolled-back"
        await wait_routes(mesh.broker_url, {v1: 100})


async def test_ab_over_the_api_waits_for_promote_and_settings_are_checked(
    mesh: Mesh, gateway: GatewayProcess, tmp_path: Path
) -> None:
    v1, v2 = await _two_versions(mesh, tmp_path)
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=gateway.headers("operator"), timeout=30
    ) as http:
        bad = {
            "Canary": ({"canaryPercent": 10}, "config.canaryPercent"),
            "BlueGreen": ({"testDuration": "soon"}, "config.testDuration"),
            "Rolling": ({"batchSize": 25, "keepBlue": "PT1H"}, "config.keepBlue"),
            "ABTesting": ({"versionA": f"v{v2}"}, "config.versionA"),
        }
        for strategy, (config, field) in bad.items():
            refused = await http.post(
                f"{API}/deployments",
                json={"functionName": SERVICE, "version": v2, "strategy": strategy, "config": config},
            )
            assert refused.status_code == 400, (strategy, refused.text)
            assert refused.json()["type"] == "ValidationError"
            assert refused.json()["details"] == {"field": field}, refused.text
        replicas = await http.post(
            f"{API}/deployments",
            json={"functionName": SERVICE, "version": v2, "strategy": "Canary", "replicas": 2},
        )
        assert replicas.status_code == 400 and replicas.json()["details"] == {"field": "replicas"}
        assert (await http.get(f"{API}/deployments/{SERVICE}")).json()["rollout"] is None  # nothing started
        developer = await http.post(
            f"{API}/deployments/{SERVICE}/promote", headers=gateway.headers("developer")
        )
        assert developer.status_code == 403
        assert (await http.post(f"{API}/deployments/{SERVICE}/promote")).status_code == 400  # no rollout
        started = await http.post(
            f"{API}/deployments",
            json={
                "functionName": SERVICE,
                "strategy": "ABTesting",
                "config": {
                    "versionA": f"v{v1}",
                    "versionB": f"v{v2}",
                    "trafficSplit": {f"v{v1}": 50, f"v{v2}": 50},
                    "testDuration": "PT1S",
                    "manualPromotion": True,
                    "minSamples": 1,
                },
            },
        )
        assert started.status_code == 201, started.text
        assert started.json()["rollout"]["toVersion"] == v2
        await wait_routes(mesh.broker_url, {v1: 50, v2: 50})
        seen = await call_versions(mesh.broker_url, 100)
        assert seen[v1] > 0 and seen[v2] > 0, seen
        await _wait_rollout(http, lambda r: r["state"] == "waiting", what="waiting for promote")
        again = await http.post(
            f"{API}/deployments", json={"functionName": SERVICE, "version": v2, "strategy": "Canary"}
        )
        assert again.status_code == 400 and "in progress" in again.json()["message"], again.text
        promoted = await http.post(f"{API}/deployments/{SERVICE}/promote")
        assert promoted.status_code == 200, promoted.text
        assert f"v{v2}" in promoted.json()["message"]
        done = await _wait_rollout(http, lambda r: r["state"] != "waiting" and r["state"] != "running")
        assert done["state"] == "succeeded", done
        await wait_routes(mesh.broker_url, {v2: 100})
