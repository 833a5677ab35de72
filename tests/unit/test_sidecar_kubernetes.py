"""The sidecar's Kubernetes calls (``dormant_sidecar.kubernetes``): the pod-deletion-cost annotation on its
own pod, checked against the API's documented shapes, and the preStop drain hook.

Two boundaries: a fake ``CoreV1Api`` (what the module calls: name, namespace, the merge-patch body and
its content type) for the coalescing and retry logic; and the real ``kubernetes`` client talking to a
stub API server on 127.0.0.1 that accepts only what the Pod PATCH endpoint documents
(``PATCH /api/v1/namespaces/{namespace}/pods/{name}``, ``Content-Type: application/merge-patch+json``,
a JSON object body), so a wrong patch type or path fails here as it would against a cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dormant_sidecar import kubernetes as k8s
from dormant_sidecar.kubernetes import DELETION_COST, FREE_COST, SERVING_COST, DeletionCost

ROOT = Path(__file__).resolve().parents[2]
HOOK = (sys.executable, "-m", "dormant_sidecar.kubernetes", "drain")


class ApiError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


class FakeCoreV1:
    """Records ``patch_namespaced_pod`` calls; fails the first ``failures`` of them with ``status``."""

    def __init__(self, failures: int = 0, status: int = 500) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, Any]]] = []
        self.failures = failures
        self.status = status
        self.gate = threading.Event()
        self.gate.set()

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **kwargs: Any) -> Any:
        self.gate.wait(10)
        self.calls.append((name, namespace, body, kwargs))
        if self.failures > 0:
            self.failures -= 1
            raise ApiError(self.status)
        return {"metadata": {"name": name, "annotations": body["metadata"]["annotations"]}}

    @property
    def costs(self) -> list[str]:
        return [body["metadata"]["annotations"][DELETION_COST] for _, _, body, _ in self.calls]


async def wait_for(condition: Any, timeout_s: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# ------------------------------------------------------------------ configuration


def test_off_without_a_pod_name() -> None:
    cost = DeletionCost.from_env({})
    assert not cost.enabled
    cost.serving(True)  # no API, no task, no error
    assert cost.applied is None


def test_a_pod_name_outside_a_cluster_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(SystemExit, match="not a Kubernetes pod"):
        DeletionCost.from_env({"DORMANT_POD_NAME": "pool-abc", "DORMANT_POD_NAMESPACE": "dormant"})


def test_a_pod_name_without_a_namespace_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(k8s, "NAMESPACE_FILE", tmp_path / "missing")
    with pytest.raises(SystemExit, match="DORMANT_POD_NAMESPACE"):
        DeletionCost.from_env({"DORMANT_POD_NAME": "pool-abc"})


def test_in_a_cluster_it_uses_the_in_cluster_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from kubernetes import client, config

    loaded: list[bool] = []
    monkeypatch.setattr(config, "load_incluster_config", lambda: loaded.append(True))
    fake = FakeCoreV1()
    monkeypatch.setattr(client, "CoreV1Api", lambda: fake)
    (tmp_path / "namespace").write_text("dormant-prod\n")
    monkeypatch.setattr(k8s, "NAMESPACE_FILE", tmp_path / "namespace")
    cost = DeletionCost.from_env({"DORMANT_POD_NAME": "pool-7d9f-x2k"})
    assert loaded == [True] and cost.api is fake
    assert (cost.name, cost.namespace) == ("pool-7d9f-x2k", "dormant-prod")
    explicit = DeletionCost.from_env({"DORMANT_POD_NAME": "p", "DORMANT_POD_NAMESPACE": "other"})
    assert explicit.namespace == "other"


# ------------------------------------------------------------------ the patches


async def test_claim_and_free_set_the_annotation_by_merge_patch() -> None:
    api = FakeCoreV1()
    cost = DeletionCost(api, "pool-abc", "dormant")
    try:
        cost.serving(True)
        await wait_for(lambda: cost.applied == SERVING_COST)
        name, namespace, body, kwargs = api.calls[0]
        assert (name, namespace) == ("pool-abc", "dormant")
        assert body == {"metadata": {"annotations": {DELETION_COST: str(SERVING_COST)}}}
        assert kwargs["_content_type"] == "application/merge-patch+json"
        assert kwargs["_request_timeout"] > 0
        cost.serving(False)
        await wait_for(lambda: cost.applied == FREE_COST)
        assert api.costs == [str(SERVING_COST), str(FREE_COST)]
        assert SERVING_COST > FREE_COST  # a scale-down removes the free pod first
    finally:
        await cost.close()


async def test_only_the_latest_cost_is_written() -> None:
    api = FakeCoreV1()
    api.gate.clear()  # the first patch hangs in the API server
    cost = DeletionCost(api, "pool-abc", "dormant")
    try:
        cost.serving(True)
        await wait_for(lambda: cost._task is not None)
        await asyncio.sleep(0.05)
        for serving in (False, True, False):  # claimed and freed again while the first patch waits
            cost.serving(serving)
        api.gate.set()
        await wait_for(lambda: cost.applied == FREE_COST)
        await asyncio.sleep(0.1)
        assert api.costs == [str(SERVING_COST), str(FREE_COST)]
        cost.serving(False)  # already applied: no call
        await asyncio.sleep(0.1)
        assert len(api.calls) == 2
    finally:
        await cost.close()


async def test_a_refused_patch_is_retried_and_reported_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(k8s, "RETRY_MIN_S", 0.01)
    api = FakeCoreV1(failures=3, status=403)
    cost = DeletionCost(api, "pool-abc", "dormant")
    caplog.set_level(logging.DEBUG, "dormant.sidecar")
    try:
        cost.serving(True)
        await wait_for(lambda: cost.applied == SERVING_COST)
        assert len(api.calls) == 4
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "HTTP 403" in warnings[0].getMessage() and "patch on pods" in warnings[0].getMessage()
    finally:
        await cost.close()


async def test_close_stops_the_writer() -> None:
    api = FakeCoreV1(failures=1000)
    cost = DeletionCost(api, "pool-abc", "dormant")
    cost.serving(True)
    await wait_for(lambda: len(api.calls) >= 1)
    task = cost._task
    await cost.close()
    assert task is not None and task.done() and cost._task is None


# ------------------------------------------------------------------ the real client, a stub API server


class _PodApi(BaseHTTPRequestHandler):
    """What the Pod PATCH endpoint documents; anything else is a 4xx, as an API server answers it."""

    seen: list[dict[str, Any]]
    status = 200

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_PATCH(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        record = {
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "authorization": self.headers.get("Authorization"),
            "body": raw.decode(),
        }
        self.seen.append(record)
        parts = self.path.split("?")[0].split("/")
        if parts[:4] != ["", "api", "v1", "namespaces"] or len(parts) != 7 or parts[5] != "pods":
            return self._answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})
        if record["content_type"] not in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ):
            return self._answer(415, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 415})
        body = json.loads(raw)
        if not isinstance(body, dict):
            return self._answer(400, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 400})
        if self.status != 200:
            return self._answer(self.status, {"kind": "Status", "apiVersion": "v1", "code": self.status})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": parts[6], "namespace": parts[4], **body.get("metadata", {})},
            "spec": {"containers": [{"name": "pool", "image": "dormant:test"}]},
        }
        self._answer(200, pod)

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api_server() -> Iterator[tuple[str, type[_PodApi]]]:
    handler = type("PodApi", (_PodApi,), {"seen": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def _real_api(host: str) -> Any:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = host
    configuration.api_key = {"authorization": "service-account-token"}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.CoreV1Api(client.ApiClient(configuration))


async def test_the_real_client_sends_the_documented_patch(api_server: tuple[str, type[_PodApi]]) -> None:
    host, handler = api_server
    cost = DeletionCost(_real_api(host), "pool-7d9f-x2k", "dormant")
    try:
        cost.serving(True)
        await wait_for(lambda: cost.applied == SERVING_COST)
        cost.serving(False)
        await wait_for(lambda: cost.applied == FREE_COST)
    finally:
        await cost.close()
    first, second = handler.seen
    assert first["path"] == "/api/v1/namespaces/dormant/pods/pool-7d9f-x2k"
    assert first["content_type"] == "application/merge-patch+json"
    assert first["authorization"] == "Bearer service-account-token"
    assert json.loads(first["body"]) == {"metadata": {"annotations": {DELETION_COST: "1000"}}}
    assert json.loads(second["body"]) == {"metadata": {"annotations": {DELETION_COST: "0"}}}


async def test_the_real_clients_errors_carry_the_status(
    api_server: tuple[str, type[_PodApi]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    host, handler = api_server
    handler.status = 403
    monkeypatch.setattr(k8s, "RETRY_MIN_S", 0.01)
    caplog.set_level(logging.WARNING, "dormant.sidecar")
    cost = DeletionCost(_real_api(host), "pool-abc", "dormant")
    try:
        cost.serving(True)
        await wait_for(lambda: len(handler.seen) >= 2)
        assert cost.applied is None
        assert any("HTTP 403" in r.getMessage() for r in caplog.records)
        handler.status = 200
        await wait_for(lambda: cost.applied == SERVING_COST)
    finally:
        await cost.close()


# ------------------------------------------------------------------ the pod's hook


def test_the_pod_reads_it_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dormant_sidecar import Pod

    monkeypatch.delenv("DORMANT_POD_NAME", raising=False)
    pod = Pod(
        broker_url="mqtt://127.0.0.1:1",
        catalog_url="postgresql://127.0.0.1:1/x",
        layer_store=tmp_path,
        work_dir=tmp_path / "w",
        ship_logs=False,
    )
    assert not pod.deletion_cost.enabled
    monkeypatch.setenv("DORMANT_POD_NAME", "pool-abc")
    monkeypatch.setenv("DORMANT_POD_NAMESPACE", "dormant")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SystemExit):
        Pod(
            broker_url="mqtt://127.0.0.1:1",
            catalog_url="postgresql://127.0.0.1:1/x",
            layer_store=tmp_path,
            work_dir=tmp_path / "w",
            ship_logs=False,
        )


# ------------------------------------------------------------------ preStop


def test_drain_signals_and_waits_for_the_sidecar_to_exit(tmp_path: Path) -> None:
    marker = tmp_path / "drained"
    # A stand-in sidecar: on SIGTERM it takes a moment to drain, writes a marker, exits.
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time, pathlib\n"
            "def stop(*_):\n"
            "    time.sleep(0.3)\n"
            f"    pathlib.Path({str(marker)!r}).write_text('ok')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, stop)\n"
            "print('ready', flush=True)\n"
            "while True: time.sleep(1)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        reaper = threading.Thread(target=child.wait)  # not our child in a container; here it is
        reaper.start()
        assert k8s.drain(child.pid, timeout_s=30, poll_s=0.05) == 0
        reaper.join(10)
        assert marker.read_text() == "ok"
    finally:
        child.kill()
        child.wait()


def test_drain_gives_up_at_its_deadline() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
         "print('ready', flush=True)\ntime.sleep(60)\n"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        assert k8s.drain(child.pid, timeout_s=0.5, poll_s=0.05) == 1
        assert child.poll() is None
    finally:
        child.kill()
        child.wait()


def test_drain_of_a_gone_process_succeeds() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert k8s.drain(child.pid, timeout_s=1) == 0


def test_drain_command_line() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("libs/python", "catalog", "sidecar")),
    }
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    reaper = threading.Thread(target=child.wait)  # reaped at once, as PID 1's exit ends a container
    reaper.start()
    try:
        done = subprocess.run(
            [*HOOK, "--pid", str(child.pid), "--timeout", "20"],
            env=env,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        reaper.join(10)
        assert child.returncode == -15  # SIGTERM reached it
    finally:
        child.kill()
        child.wait()
