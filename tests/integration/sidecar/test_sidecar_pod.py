"""The Pod in this process against a real catalog, real layers and the fake runtime."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sidecar_helpers import alive, read_log, wait_for

from dormant_catalog import Catalog
from dormant_sidecar import Pod

DeployApp = Callable[..., Awaitable[int]]
StartPod = Callable[..., Awaitable[Pod]]


def loads(log: Path, **match: Any) -> list[dict[str, Any]]:
    return [e for e in read_log(log) if e["event"] == "load" and all(e.get(k) == v for k, v in match.items())]


def drained(log: Path, pid: int) -> dict[str, Any] | None:
    return next((e for e in read_log(log) if e["event"] == "drained" and e["pid"] == pid), None)


async def test_claim_load_ready_and_stop(
    catalog: Catalog, deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path, catalog_url: str
) -> None:
    await deploy_app("svc", "hello v1")
    pod = await start_pod()
    [load] = await wait_for(lambda: loads(runtime_log, version=1), what="v1 loaded")
    assert (load["service"], load["content"], load["live"]) == ("svc", "hello v1", True)
    assert Path(load["app_dir"]).parent == pod.work_dir / "layers"
    assert len(Path(load["app_dir"]).name) == 64  # the layer digest
    slot = (await catalog.list_slots("svc"))[0]
    assert slot.pod_id == pod.pod_id and slot.lease_live

    # The pod reports the version serving after the runtime says it loaded it: wait for that report.
    async def running() -> bool:
        return (await catalog.deployment_status("svc")).state == "running"

    await wait_for(running, what="the deployment running")
    # The runtime got its settings from the environment.
    start = next(e for e in read_log(runtime_log) if e["pid"] == load["pid"] and e["event"] == "start")
    assert (start["pod_id"], start["catalog"]) == (pod.pod_id, catalog_url)
    # A fresh standby was spawned after the load.
    await wait_for(lambda: pod.supervisor and pod.supervisor.standby and pod.supervisor.standby.running)
    assert pod.supervisor is not None and pod.supervisor.standby is not None
    standby_pid = pod.supervisor.standby.pid
    assert standby_pid != load["pid"]
    # The lease keeps being renewed past its length.
    first_expiry = slot.lease_expires_at
    await wait_for(lambda: _lease_moved(catalog, first_expiry), within=5, what="lease renewal")

    pod.stop()
    await wait_for(lambda: drained(runtime_log, load["pid"]), what="drain on stop")
    await wait_for(lambda: not alive(load["pid"]) and not alive(standby_pid), what="children gone")
    await wait_for(_slot_free(catalog, "svc"), what="slot released")
    assert {p.pod_id: p.state for p in await catalog.list_pods()}[pod.pod_id] == "gone"


def _slot_free(catalog: Catalog, app: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return all(s.pod_id is None for s in await catalog.list_slots(app))

    return check


async def _lease_moved(catalog: Catalog, before: Any) -> bool:
    slot = (await catalog.list_slots("svc"))[0]
    return slot.lease_expires_at is not None and slot.lease_expires_at > before


async def test_redeploy_loads_new_process_then_drains_old(
    catalog: Catalog, deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path
) -> None:
    await deploy_app("svc", "v1 code")
    pod = await start_pod()
    [v1] = await wait_for(lambda: loads(runtime_log, version=1), what="v1 loaded")
    await deploy_app("svc", "v2 code")
    [v2] = await wait_for(lambda: loads(runtime_log, version=2), what="v2 loaded")
    assert v2["pid"] != v1["pid"] and v2["content"] == "v2 code"
    old_drained = await wait_for(lambda: drained(runtime_log, v1["pid"]), what="v1 drained")
    assert old_drained["t"] > v2["t"]  # no gap: the new version was ready before the old one drained
    await wait_for(lambda: not alive(v1["pid"]), what="v1 process gone")
    assert alive(v2["pid"])
    assert pod.claim is not None and pod.claim.target == (2, 2, True)
    slot = (await catalog.list_slots("svc"))[0]
    assert (slot.version, slot.generation, slot.pod_id) == (2, 2, pod.pod_id)


async def test_crashed_runtime_is_restarted_from_the_same_layer(
    deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="dormant.sidecar")
    await deploy_app("svc", "v1 code")
    await start_pod()
    [first] = await wait_for(lambda: loads(runtime_log, version=1), what="v1 loaded")
    os.kill(first["pid"], signal.SIGKILL)
    second = (await wait_for(lambda: loads(runtime_log, version=1)[1:], what="restart"))[0]
    assert second["pid"] != first["pid"]
    assert second["app_dir"] == first["app_dir"] and second["content"] == "v1 code"
    assert f"runtime {first['pid']} for svc v1 exited unexpectedly with code -9" in caplog.text


async def test_lost_slot_drains_at_once_and_pod_claims_again(
    catalog: Catalog, deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path
) -> None:
    await deploy_app("svc", "v1 code")
    pod = await start_pod()
    [v1] = await wait_for(lambda: loads(runtime_log, version=1), what="v1 loaded")
    await catalog.deploy("svc", replicas=0)
    await wait_for(lambda: drained(runtime_log, v1["pid"]), what="drain after losing the slot")
    await wait_for(lambda: pod.claim is None, what="pod idle")
    await deploy_app("other", "other code")
    [other] = await wait_for(lambda: loads(runtime_log, service="other"), what="other app loaded")
    assert other["pid"] != v1["pid"]


async def test_pod_only_claims_its_base_runtime(
    catalog: Catalog, deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path
) -> None:
    await deploy_app("node-svc", "js", base_image="dormant-node:1")
    pod = await start_pod()
    await wait_for(
        lambda: _status_reason(catalog, "node-svc", "no registered pod provides base runtime dormant-node:1"),
        what="status explains",
    )
    await deploy_app("py-svc", "py")
    [load] = await wait_for(lambda: loads(runtime_log), what="python app loaded")
    assert load["service"] == "py-svc"
    assert pod.claim is not None and pod.claim.app_name == "py-svc"
    assert all(s.pod_id is None for s in await catalog.list_slots("node-svc"))


async def _status_reason(catalog: Catalog, app: str, reason: str) -> bool:
    return (await catalog.deployment_status(app)).reason == reason


async def test_bad_layers_and_failed_loads_are_reported(
    catalog: Catalog, deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path
) -> None:
    await deploy_app("ghost", "x", image=f"ghost@sha256:{'0' * 64}")
    await deploy_app("broken", "fail: import error")
    await start_pod()
    await wait_for(
        lambda: _reason_contains(catalog, "ghost", "cannot fetch layer ghost@sha256:"), what="fetch failure"
    )
    await wait_for(
        lambda: _reason_contains(catalog, "broken", "cannot load broken: fail: import error"),
        what="load failure",
    )
    assert loads(runtime_log) == []


async def _reason_contains(catalog: Catalog, app: str, text: str) -> bool:
    return text in (await catalog.deployment_status(app)).reason


async def test_two_pods_share_two_replicas(
    catalog: Catalog, deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path
) -> None:
    await deploy_app("svc", "code", replicas=2)
    pods = [await start_pod(), await start_pod()]
    await wait_for(lambda: len(loads(runtime_log)) == 2, what="two loads")
    holders = {s.pod_id for s in await catalog.list_slots("svc")}
    assert holders == {p.pod_id for p in pods}
