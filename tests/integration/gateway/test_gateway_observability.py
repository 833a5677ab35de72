"""Metrics and health endpoints on a real mesh (issue 13, items 2 and 4): the gateway's, the
controller's and the pods' ``/metrics`` are scraped while calls, errors, throttles and a runtime crash
happen, and the numbers move with them; ``/readyz`` follows the leader lock, the broker and the
runtime's load; ``dormant pods`` and ``dormant status`` show the pods' health and restarts.

The mesh (``obs``): ``probe-service`` on one replica, two pods and a controller each with a metrics
port, and a gateway, on the session broker and a private catalog.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
import pytest_asyncio
from e2e.mesh import Mesh, caller_token, child_env, running_mesh
from gw_helpers import PROBE, GatewayProcess, new_gateway
from prometheus_client.parser import text_string_to_metric_families

from dormant import Client
from dormant.errors import SystemError, Throttled, Unavailable, ValidationError
from dormant_catalog.controller.lock import LOCK_KEY
from dormant_local import MosquittoProcess, free_port

API = "/api/v1"
SERVICE = "probe-service"
T = TypeVar("T")

Samples = dict[str, dict[frozenset[tuple[str, str]], float]]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{url}/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample ``name`` with exactly ``labels`` (0 when absent)."""
    return samples.get(name, {}).get(frozenset(labels.items()), 0.0)


async def health(url: str, path: str = "/readyz") -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{url}{path}")
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return response.status_code, body


async def until(probe: Callable[[], Awaitable[T | None]], what: str, *, within_s: float = 60) -> T:
    """Ask ``probe`` until it returns something (not None), or fail saying ``what`` never happened."""
    deadline = time.monotonic() + within_s
    last: Any = None
    while True:
        try:
            found = await probe()
        except (httpx.HTTPError, OSError) as exc:  # a server still starting, or restarting
            found, last = None, exc
        if found is not None:
            return found
        assert time.monotonic() < deadline, f"{what} did not happen within {within_s} s (last: {last!r})"
        await asyncio.sleep(0.1)


async def until_readiness(url: str, ready: bool, *, within_s: float = 60) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        status, body = await health(url)
        assert status in (200, 503), body
        return body if (status == 200) == ready else None

    return await until(check, f"{url} {'ready' if ready else 'not ready'}", within_s=within_s)


def start_controller(mesh: Mesh, port: int, name: str = "controller") -> subprocess.Popen[bytes]:
    """``dormant controller --metrics-port PORT`` as a child of the mesh."""
    log = (mesh.work_root / f"{name}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "dormant_cli", "controller", "--metrics-port", str(port)],
        env=child_env(DORMANT_BROKER_URL=mesh.broker_url, DORMANT_CATALOG_URL=mesh.catalog_url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    mesh.pods[name] = process
    return process


def dormant_json(mesh: Mesh, *args: str) -> dict[str, Any]:
    """Run ``dormant ARGS --json`` on the mesh; its JSON output."""
    done = subprocess.run(
        [sys.executable, "-m", "dormant_cli", *args, "--json"],
        env=child_env(DORMANT_BROKER_URL=mesh.broker_url, DORMANT_CATALOG_URL=mesh.catalog_url),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    out: dict[str, Any] = json.loads(done.stdout)
    return out


@dataclass
class Observed:
    mesh: Mesh
    gateway: GatewayProcess
    controller: str
    pods: dict[str, str]
    """pod id -> the base URL of its endpoints"""


@pytest_asyncio.fixture(scope="module")
async def obs(broker: MosquittoProcess, gw_db: str, gw_tmp: Path) -> AsyncIterator[Observed]:
    mesh = Mesh(broker.url, gw_db, gw_tmp / "layers", gw_tmp / "pods")
    mesh.work_root.mkdir(parents=True, exist_ok=True)
    token = caller_token(mesh.identity.token("tester"))
    token.__enter__()
    gateway = new_gateway(mesh, gw_tmp, "gw-obs")
    try:
        service, version = await mesh.publish(PROBE)
        await mesh.deploy(service, version, replicas=1)
        controller_port = free_port()
        start_controller(mesh, controller_port)  # first: it sees the runtimes' first windows
        pods = {}
        for pod in ("obs-pod-1", "obs-pod-2"):
            port = free_port()
            mesh.start_pod(pod, extra_args=["--metrics-port", str(port)])
            pods[pod] = f"http://127.0.0.1:{port}"
        await mesh.wait_serving(SERVICE, timeout=120)
        await gateway.start()
        yield Observed(mesh, gateway, f"http://127.0.0.1:{controller_port}", pods)
    finally:
        gateway.stop()
        mesh.stop()
        token.__exit__(None, None, None)


async def serving_pod(obs: Observed) -> str:
    """The pod holding the service's slot, by its own metrics."""

    async def find() -> str | None:
        for pod, url in obs.pods.items():
            if value(await scrape(url), "dormant_pod_serving", service=SERVICE, version="1") == 1:
                return pod
        return None

    return await until(find, "a pod serving the probe service")


@pytest.mark.timeout(600)
async def test_each_endpoint_is_scraped_and_its_numbers_move_with_calls_errors_and_throttles(
    obs: Observed,
) -> None:
    echo = {"service": SERVICE, "function": "echo", "version": "1"}
    explode = {"service": SERVICE, "function": "explode", "version": "1"}
    before = await scrape(obs.controller)
    async with Client(obs.mesh.broker_url) as client:
        for n in range(5):
            await client.call(SERVICE, "echo", {"text": f"hi {n}"}, timeout=30)
        for _ in range(2):
            with pytest.raises(SystemError):
                await client.call(SERVICE, "explode", {}, timeout=30)
        with pytest.raises(ValidationError):
            await client.call(SERVICE, "echo", {"text": 5}, timeout=30)

    # The controller: every call counted once, by function and outcome (windows come every second).
    async def counted() -> Samples | None:
        now = await scrape(obs.controller)
        moved = value(now, "dormant_function_invocations_total", **echo) - value(
            before, "dormant_function_invocations_total", **echo
        )
        exploded = value(now, "dormant_function_errors_total", **explode, error_type="SystemError")
        return now if moved >= 6 and exploded >= 2 else None

    after = await until(counted, "the controller counting the calls")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("dormant_function_invocations_total", **echo) == 6
    assert delta("dormant_function_invocations_total", **explode) == 2
    assert delta("dormant_function_errors_total", **echo, error_type="ValidationError") == 1
    assert delta("dormant_function_errors_total", **explode, error_type="SystemError") == 2
    assert delta("dormant_function_duration_seconds_count", **echo) == 6
    assert value(after, "dormant_function_duration_seconds_bucket", **echo, le="+Inf") == value(
        after, "dormant_function_duration_seconds_count", **echo
    )
    assert value(after, "dormant_function_throttles_total", **echo) == 0
    version = {"service": SERVICE, "version": "1"}
    cold_starts = value(after, "dormant_function_cold_starts_total", **version)
    assert cold_starts >= 1
    assert value(after, "dormant_function_init_duration_seconds_count", **version) == cold_starts
    assert value(after, "dormant_function_memory_used_bytes_count", **version) >= 1
    # The catalog's figures and the pool, from the active controller.
    assert value(after, "dormant_controller_leader") == 1
    assert value(after, "dormant_controller_stats_windows_total") > 0
    assert value(after, "dormant_functions") == 1
    assert value(after, "dormant_function_versions", service=SERVICE) == 1
    assert value(after, "dormant_runners_active") == 2
    assert value(after, "dormant_pool_pods_claimed") == 1 and value(after, "dormant_pool_pods_free") == 1
    assert value(after, "dormant_pool_slots_unassigned", base_image="dormant-python:1") == 0
    # No family is exported twice, and no counter as ..._total_total.
    assert not [name for name in after if name.endswith("_total_total")]

    # The pods: the serving one holds one serving runtime and a warm standby; both are ready.
    serving = await serving_pod(obs)
    pod = await scrape(obs.pods[serving])
    assert value(pod, "dormant_runner_containers", state="serving") == 1
    assert value(pod, "dormant_runner_containers", state="standby") == 1
    for url in obs.pods.values():
        assert (await until_readiness(url, True))["checks"]["catalog"]["ok"]
        assert value(await scrape(url), "dormant_pod_ready") == 1
    status, body = await health(obs.pods[serving])
    assert status == 200 and body["checks"]["runtime"]["detail"].startswith(f"serving {SERVICE} v1")

    # The gateway: its own requests and the calls it makes, by trigger and outcome.
    gateway = obs.gateway
    status, body = await health(gateway.url)
    assert status == 200 and body["component"] == "gateway"
    assert body["checks"]["mqtt"]["ok"] and body["checks"]["database"]["ok"]
    assert (await health(gateway.url, "/healthz"))[0] == 200
    invoke_route = {"route": f"{API}/functions/{{name}}/invoke", "method": "POST"}
    gw_before = await scrape(gateway.url)
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin"), timeout=60) as http:
        for _ in range(2):
            answer = await http.post(f"{API}/functions/{SERVICE}.echo/invoke", json={"text": "via http"})
            assert answer.status_code == 200, answer.text
        gw_after = await scrape(gateway.url)
        ok = {"service": SERVICE, "trigger": "invoke", "outcome": "ok"}
        assert (
            value(gw_after, "dormant_gateway_invocations_total", **ok)
            - value(gw_before, "dormant_gateway_invocations_total", **ok)
            == 2
        )
        assert (
            value(gw_after, "dormant_gateway_http_requests_total", **invoke_route, status="200")
            - value(gw_before, "dormant_gateway_http_requests_total", **invoke_route, status="200")
            == 2
        )
        assert value(gw_after, "dormant_gateway_http_request_duration_seconds_count", **invoke_route) >= 2

        # Throttles: one call at a time per replica; four at once through the gateway get 429s.
        async with Client(obs.mesh.broker_url) as client:
            old_pid = int((await client.call(SERVICE, "echo", {"text": "pid"}, timeout=30))["pid"])
        put = await http.put(f"{API}/functions/{SERVICE}/concurrency", json={"maxConcurrency": 1})
        assert put.status_code == 200, put.text
        new_pid = await until_new_runtime(obs.mesh, old_pid)
        # The new limit came with a new runtime process: one more cold start.
        await until(
            lambda: more_than(obs.controller, "dormant_function_cold_starts_total", cold_starts, **version),
            "the new runtime's cold start",
        )
        before_throttles = await scrape(obs.controller)
        gw_before = await scrape(gateway.url)
        busy = asyncio.gather(
            *(http.post(f"{API}/functions/{SERVICE}.sleep/invoke", json={"ms": 4000}) for _ in range(4))
        )
        # While one runs, the controller sees it in flight.
        await until(
            lambda: more_than(obs.controller, "dormant_function_concurrent_executions", 0, **version),
            "a call in flight",
            within_s=30,
        )
        statuses = [r.status_code for r in await busy]
        throttled = statuses.count(429)
        assert throttled >= 1 and statuses.count(200) + throttled == 4, statuses

    sleep = {"service": SERVICE, "function": "sleep", "version": "1"}
    later = await until(
        lambda: more_than(
            obs.controller,
            "dormant_function_throttles_total",
            value(before_throttles, "dormant_function_throttles_total", **sleep) + throttled - 1,
            **sleep,
        ),
        "the controller counting the throttles",
    )
    assert (
        value(later, "dormant_function_throttles_total", **sleep)
        - value(before_throttles, "dormant_function_throttles_total", **sleep)
        == throttled
    )
    gw_after = await scrape(gateway.url)
    refused = {"service": SERVICE, "trigger": "invoke", "outcome": "Throttled"}
    assert (
        value(gw_after, "dormant_gateway_invocations_total", **refused)
        - value(gw_before, "dormant_gateway_invocations_total", **refused)
        == throttled
    )
    assert (
        value(gw_after, "dormant_gateway_http_requests_total", **invoke_route, status="429")
        - value(gw_before, "dormant_gateway_http_requests_total", **invoke_route, status="429")
        == throttled
    )

    # A runtime that crashes is restarted and counted, per version; `dormant pods` and `dormant
    # status` show it, and the pod is ready again once the new runtime serves.
    serving = await serving_pod(obs)
    os.kill(new_pid, signal.SIGKILL)
    await until(
        lambda: more_than(
            obs.pods[serving], "dormant_runtime_restarts_total", 0, service=SERVICE, version="1"
        ),
        "the restart counted",
    )
    await until_readiness(obs.pods[serving], True)

    async def pods_listed() -> dict[str, Any] | None:
        listed = {p["pod"]: p for p in dormant_json(obs.mesh, "pods")["pods"]}
        shown = listed.get(serving, {}).get("health") or {}
        return listed if shown.get("restarts") == {SERVICE: {"1": 1}} and shown.get("ready") else None

    listed = await until(pods_listed, "`dormant pods` showing the restart")
    assert listed[serving]["health"]["runtimes"]["serving"] == 1
    other = next(p for p in obs.pods if p != serving)
    assert listed[other]["health"]["ready"] and listed[other]["health"]["restarts"] == {}
    shown = dormant_json(obs.mesh, "status", SERVICE, "--listen", "0")
    assert shown["restarts"] == {"1": 1}
    [slot] = shown["slots"]
    assert slot["pod"] == serving and slot["podHealth"]["ready"]

    # More replicas than pods: the slot no pod holds is what a pool autoscaler sees.
    await obs.mesh.deploy(SERVICE, 1, replicas=3)

    async def pool_full() -> Samples | None:
        now = await scrape(obs.controller)
        unassigned = value(now, "dormant_pool_slots_unassigned", base_image="dormant-python:1")
        return now if unassigned == 1 and value(now, "dormant_pool_pods_claimed") == 2 else None

    full = await until(pool_full, "one unassigned slot")
    assert value(full, "dormant_pool_pods_free") == 0 and value(full, "dormant_runners_active") == 2


async def more_than(url: str, name: str, floor: float, **labels: str) -> Samples | None:
    samples = await scrape(url)
    return samples if value(samples, name, **labels) > floor else None


async def until_new_runtime(mesh: Mesh, old_pid: int) -> int:
    """The pid of the runtime answering once it is no longer ``old_pid`` and the old one has drained
    (ten answers in a row from the same new process)."""
    streak: list[int] = []
    async with Client(mesh.broker_url) as client:

        async def new() -> int | None:
            nonlocal streak
            try:
                pid = int((await client.call(SERVICE, "echo", {"text": "pid"}, timeout=10))["pid"])
            except (Unavailable, Throttled):
                pid = old_pid
            streak = [*streak, pid] if streak and streak[-1] == pid else [pid]
            return pid if pid != old_pid and len(streak) >= 10 else None

        return await until(new, "a new runtime")


@pytest.mark.timeout(300)
async def test_the_controller_is_ready_only_as_the_active_controller_with_its_broker(
    fresh_broker: MosquittoProcess, catalog_url: str, tmp_path: Path
) -> None:
    with running_mesh(fresh_broker.url, catalog_url, tmp_path) as mesh:
        # Another process holds the leader lock: this controller waits, alive but not ready.
        holder = await psycopg.AsyncConnection.connect(catalog_url, autocommit=True)
        try:
            await holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            port = free_port()
            start_controller(mesh, port)
            url = f"http://127.0.0.1:{port}"
            body = await until_readiness(url, False)
            assert body["component"] == "controller"
            assert body["checks"]["leader"] == {"ok": False, "detail": "waiting for the leader lock"}
            assert body["checks"]["database"]["ok"] and not body["checks"]["mqtt"]["ok"]
            assert (await health(url, "/healthz"))[0] == 200
            standby = await scrape(url)
            assert value(standby, "dormant_controller_leader") == 0
            assert "dormant_functions" not in standby  # the pool is the active controller's to report
        finally:
            await holder.close()
        # The lock is free: it becomes the active controller, and ready.
        body = await until_readiness(url, True)
        assert all(check["ok"] for check in body["checks"].values())
        active = await scrape(url)
        assert value(active, "dormant_controller_leader") == 1 and "dormant_functions" in active
        # Its broker goes away: not ready (still the leader); back once the broker is.
        await fresh_broker.stop()
        body = await until_readiness(url, False)
        assert body["checks"]["mqtt"] == {"ok": False, "detail": "not connected to the broker"}
        assert body["checks"]["leader"]["ok"]
        await fresh_broker.start()
        await until_readiness(url, True)


@pytest.mark.timeout(300)
async def test_a_pod_is_ready_once_its_runtime_has_loaded_the_version_and_is_connected(
    fresh_broker: MosquittoProcess, catalog_url: str, tmp_path: Path
) -> None:
    with running_mesh(fresh_broker.url, catalog_url, tmp_path) as mesh:
        service, version = await mesh.publish(PROBE)
        await mesh.deploy(service, version, replicas=1)
        # Its runtimes wait for a gate file before they start, so the pod is caught before its
        # runtime can serve, for as long as the test needs.
        gate = tmp_path / "gate"
        runtime_cmd = (
            f"sh -c 'while [ ! -e {gate} ]; do sleep 0.05; done; exec {sys.executable} -m dormant_runtime'"
        )
        port = free_port()
        mesh.start_pod("gated", extra_args=["--metrics-port", str(port), "--runtime-cmd", runtime_cmd])
        url = f"http://127.0.0.1:{port}"
        body = await until_readiness(url, False)
        assert not body["checks"]["runtime"]["ok"], body
        assert value(await scrape(url), "dormant_pod_ready") == 0
        gate.touch()
        body = await until_readiness(url, True)
        assert body["checks"]["runtime"]["detail"].startswith(f"serving {SERVICE} v1 in runtime")
        assert body["checks"]["catalog"]["ok"]
        ready = await scrape(url)
        assert value(ready, "dormant_pod_ready") == 1
        assert value(ready, "dormant_runner_containers", state="serving") == 1
        # The broker goes away: the runtime says it lost its connection, and the pod is not ready.
        await fresh_broker.stop()
        body = await until_readiness(url, False)
        assert body["checks"]["runtime"]["detail"] == f"{SERVICE} v1: the runtime lost its broker connection"
        await fresh_broker.start()
        await until_readiness(url, True)
        await mesh.wait_serving(SERVICE)  # and it answers again
