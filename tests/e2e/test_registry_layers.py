"""Layers in an OCI registry, end to end: publish pushes the app, dependency and shared layers to a real
distribution server, and a pod whose ``DORMANT_LAYER_STORE`` is the registry pulls them by digest and
serves; a registry that goes down and comes back while a pod pulls costs a retry, not a failed start."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from dormant import Client
from dormant_catalog import open_catalog
from dormant_catalog.layers import dependency_layer
from dormant_cli import main as cli
from dormant_local import MosquittoProcess
from dormant_local.registry import RegistryServer

from .mesh import PROBE, Mesh, caller_token, copy_service
from .registry_helpers import HoldingRelay
from .wheels import local_index, make_wheel

MODULE = "dormant_registry_probe"
DEP_MODULE = "dormant_registry_dep"
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def registry_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DORMANT_REGISTRY_USERNAME", "DORMANT_REGISTRY_PASSWORD", "DORMANT_LAYER_CACHE_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


@pytest_asyncio.fixture
async def registry(tmp_path: Path) -> AsyncIterator[RegistryServer]:
    server = RegistryServer(tmp_path / "registry")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def _mesh(broker: MosquittoProcess, catalog_url: str, tmp: Path, store: str) -> Iterator[Mesh]:
    mesh = Mesh(broker.url, catalog_url, store, tmp / "pods")
    mesh.work_root.mkdir(parents=True, exist_ok=True)
    try:
        with caller_token(mesh.identity.token("tester")):
            yield mesh
    finally:
        mesh.stop()


def _cli(
    mesh: Mesh, capsys: pytest.CaptureFixture[str], *args: str, store: str | None = None
) -> dict[str, object]:
    flags = ["--catalog-url", mesh.catalog_url, "--json"]
    assert cli([*args, *flags, *(["--layer-store", store] if store else [])]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def _layer_dir(tmp: Path, name: str, files: dict[str, bytes]) -> Path:
    folder = tmp / name
    for path, data in files.items():
        (folder / "python" / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / "python" / path).write_bytes(data)
    return folder


def _tags(registry: RegistryServer, repository: str) -> list[str]:
    response = httpx.get(f"{registry.url}/v2/{repository}/tags/list")
    response.raise_for_status()
    return sorted(response.json()["tags"])


async def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 90.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_publish_to_a_registry_and_serve_from_it(
    broker: MosquittoProcess,
    catalog_url: str,
    registry: RegistryServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "dormant-registry-dep", "1.0", {f"{DEP_MODULE}.py": 'VALUE = "from the deps layer"\n'})
    local_index(monkeypatch, wheels)
    service_dir = copy_service(PROBE, tmp_path / "svc")
    (service_dir / "requirements.txt").write_text("dormant-registry-dep==1.0\n")
    store = registry.store_url("dormant")
    for mesh in _mesh(broker, catalog_url, tmp_path, store):
        service, version = await mesh.publish(service_dir)  # the import check pulls the deps layer back
        shared = _layer_dir(tmp_path, "utils", {f"{MODULE}.py": b'VALUE = "from the shared layer"\n'})
        published = await asyncio.to_thread(_cli, mesh, capsys, "layer", "publish", str(shared), store=store)
        assert published["reference"] == "utils:1"
        await asyncio.to_thread(_cli, mesh, capsys, "layer", "attach", service, "utils:1")
        await mesh.deploy(service, version)

        # Every layer is in the registry, under its repository, tagged with its version.
        assert _tags(registry, f"dormant/apps/{service}") == ["latest", f"v{version}"]
        assert _tags(registry, "dormant/layers/utils") == ["latest", "v1"]
        catalog = await open_catalog(mesh.catalog_url)
        try:
            deps = await catalog.db.run(dependency_layer, service, version)
            record = await catalog.get_version(service, version)
        finally:
            await catalog.close()
        assert deps is not None and record is not None
        app_image = record.app_layer_image
        lock_hash = deps[0].split("@")[0].removeprefix("dormant-deps-")
        assert _tags(registry, f"dormant/deps/{lock_hash}") == ["latest"]
        assert app_image.startswith(f"{service}@sha256:")  # the catalog references manifests by digest

        mesh.start_pod("pod-1")
        await mesh.wait_serving(service, version=version)
        async with Client(mesh.broker_url) as client:
            from_shared = await client.call(service, "module", {"name": MODULE})
            from_deps = await client.call(service, "module", {"name": DEP_MODULE})
        assert from_shared["value"] == "from the shared layer"
        assert from_deps["value"] == "from the deps layer"
        cached = os.listdir(mesh.work_root / "pod-1" / "blobs" / "sha256")  # the pod's blob cache
        assert app_image.split("@sha256:")[1] in cached


async def test_a_pod_pulls_through_a_registry_restart(
    broker: MosquittoProcess,
    catalog_url: str,
    registry: RegistryServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = registry.store_url("dormant")
    relay = HoldingRelay(registry.port)  # the pod's way to the registry
    try:
        for mesh in _mesh(broker, catalog_url, tmp_path, store):
            service, version = await mesh.publish(PROBE, import_check=False)
            big = _layer_dir(
                tmp_path, "big", {"blob.bin": os.urandom(8 * MiB), f"{MODULE}.py": b'VALUE = "big"\n'}
            )
            await asyncio.to_thread(_cli, mesh, capsys, "layer", "publish", str(big), store=store)
            await asyncio.to_thread(_cli, mesh, capsys, "layer", "attach", service, "big:1")
            await mesh.deploy(service, version)

            relay.hold(after=1 * MiB)  # the app layer passes; the big layer stops part-way
            mesh.start_pod(
                "pod-1", extra_args=["--layer-store", f"oci+http://127.0.0.1:{relay.port}/dormant"]
            )
            assert await asyncio.to_thread(relay.held.wait, 90), mesh.pod_log("pod-1")[-3000:]
            await registry.stop()
            relay.release()  # the pod's download breaks off; its retries find the registry down
            await _wait_for(lambda: relay.refused >= 2, "the pod retrying while the registry is down")
            await registry.start()
            await mesh.wait_serving(service, version=version)
            async with Client(mesh.broker_url) as client:
                answer = await client.call(service, "module", {"name": MODULE})
            assert answer["value"] == "big"
            log = mesh.pod_log("pod-1")
            assert "retrying in" in log and "cannot serve" not in log, log[-3000:]
            assert relay.requests_with(b"range: bytes=") >= 1  # it resumed the download
    finally:
        relay.close()
