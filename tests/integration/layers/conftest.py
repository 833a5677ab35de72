"""Fixtures for the registry store tests: ``registry``, a private distribution server per test, and an
environment with no registry credentials, docker config or cache directory of the machine's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dormant_local.registry import RegistryServer


@pytest.fixture(autouse=True)
def registry_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "DORMANT_REGISTRY_USERNAME",
        "DORMANT_REGISTRY_PASSWORD",
        "DORMANT_REGISTRY_INSECURE",
        "DORMANT_REGISTRY_RETRY_S",
        "DORMANT_REGISTRY_CA_FILE",
        "DORMANT_LAYER_CACHE_DIR",
        "DORMANT_LAYER_CACHE_MAX_BYTES",
    ):
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
