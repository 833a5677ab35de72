"""Catalog test fixtures: an open ``Catalog`` on a fresh database and ``register`` to add versions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from dormant_catalog import Catalog, open_catalog


@pytest_asyncio.fixture
async def catalog(catalog_url: str) -> AsyncIterator[Catalog]:
    cat = await open_catalog(catalog_url, max_size=10)
    try:
        yield cat
    finally:
        await cat.close()


Register = Callable[..., Awaitable[int]]


@pytest.fixture
def register() -> Register:
    """``await register(catalog, app, base_image=..., **register_version_kwargs)``."""
    return _register


async def _register(catalog: Catalog, app: str, *, base_image: str = "dormant-python:1", **extra: Any) -> int:
    """Register a version of ``app`` with made-up but well-formed metadata."""
    version = (await catalog.latest_version(app) or 0) + 1
    return await catalog.register_version(
        app_name=app,
        app_layer_image=extra.pop("app_layer_image", f"oci:/layers/{app}@sha256:{version:064x}"),
        base_image=base_image,
        interface_hash=extra.pop("interface_hash", f"sha256:{version:064x}"),
        schema_definition=extra.pop("schema_definition", {"functions": {"ping": {}}}),
        topic_mappings=extra.pop("topic_mappings", {"ping": f"service/{app}/ping"}),
        **extra,
    )
