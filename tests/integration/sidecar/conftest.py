"""Sidecar test fixtures: a catalog, a layer store with published apps, the fake runtime, pods.

``deploy_app`` publishes a layer whose ``app.txt`` holds the given text, registers it and deploys it.
Runtime processes are the fake runtime (``fake_runtime.py``), which logs to ``runtime_log``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sidecar_helpers import FAKE_RUNTIME, layer_bytes

from dormant_catalog import Catalog, open_catalog
from dormant_layers import LayerStore
from dormant_sidecar import Pod


@pytest_asyncio.fixture
async def catalog(catalog_url: str) -> AsyncIterator[Catalog]:
    cat = await open_catalog(catalog_url)
    try:
        yield cat
    finally:
        await cat.close()


@pytest.fixture
def runtime_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "runtime.log"
    monkeypatch.setenv("FAKE_RUNTIME_LOG", str(path))
    return path


DeployApp = Callable[..., Awaitable[int]]


@pytest.fixture
def deploy_app(catalog: Catalog, layer_store: Path) -> DeployApp:
    async def deploy(
        app: str,
        text: str,
        *,
        replicas: int = 1,
        base_image: str = "dormant-python:1",
        image: str | None = None,
    ) -> int:
        ref = LayerStore(layer_store).push(f"{app}:{text.replace(' ', '-')}", layer_bytes(text))
        version = await catalog.register_version(
            app_name=app,
            app_layer_image=image or str(ref),
            base_image=base_image,
            interface_hash="sha256:test",
            schema_definition={},
            topic_mappings={},
        )
        await catalog.deploy(app, version=version, replicas=replicas)
        return version

    return deploy


StartPod = Callable[..., Awaitable[Pod]]


@pytest_asyncio.fixture
async def start_pod(
    catalog_url: str, layer_store: Path, tmp_path: Path, runtime_log: Path
) -> AsyncIterator[StartPod]:
    """``await start_pod(**Pod kwargs)``: a Pod running in this event loop, stopped after the test."""
    running: list[tuple[Pod, asyncio.Task[None]]] = []

    async def start(**kwargs: Any) -> Pod:
        index = len(running)
        options: dict[str, Any] = {
            "broker_url": "mqtt://127.0.0.1:1",
            "catalog_url": catalog_url,
            "layer_store": layer_store,
            "work_dir": tmp_path / f"work-{index}",
            "pod_id": f"pod-{index}",
            "lease_s": 1.0,
            "poll_interval_s": 0.5,
            "drain_timeout_s": 5.0,
            "load_timeout_s": 10.0,
            "runtime_cmd": FAKE_RUNTIME,
        }
        options.update(kwargs)
        pod = Pod(**options)
        running.append((pod, asyncio.create_task(pod.run())))
        return pod

    yield start
    for pod, _ in running:
        pod.stop()
    for _, task in running:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 20)
