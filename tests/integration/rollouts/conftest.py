"""Fixtures for rollout tests: a real mesh (pods as processes, the session broker, a fresh catalog)
whose retained route table and service state are removed afterwards, so no other test sees them."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from e2e.mesh import Mesh, clear_retained, running_mesh
from rollout_helpers import SERVICE

from dormant_local import MosquittoProcess


@pytest_asyncio.fixture
async def mesh(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> AsyncIterator[Mesh]:
    with running_mesh(broker.url, catalog_url, tmp_path) as m:
        try:
            yield m
        finally:
            for name, pod in list(m.pods.items()):
                if name.startswith("controller") and pod.poll() is None:
                    pod.terminate()
                    try:
                        pod.wait(10)
                    except subprocess.TimeoutExpired:
                        pod.kill()
    await clear_retained(broker.url, [SERVICE])
