"""LISTEN/NOTIFY: deploys and released slots wake listening sidecars."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg
import pytest

from dormant_catalog import Catalog, CatalogUnavailable

Register = Callable[..., Awaitable[int]]


async def test_deploy_and_release_notify_listeners(catalog: Catalog, register: Register) -> None:
    await register(catalog, "svc")
    async with catalog.listen_slots() as listener:
        received = aiter(listener)
        await catalog.deploy("svc")
        assert await asyncio.wait_for(anext(received), 5) == "svc"
        got = await catalog.claim_slot(
            "p", base_images=["dormant-python:1"], platform_interfaces=["dormant/1"], lease_s=5
        )
        assert got is not None
        assert await catalog.release_slot("p", got.slot_id)
        assert await asyncio.wait_for(anext(received), 5) == "svc"


async def test_a_lost_listener_connection_raises_catalog_unavailable(
    catalog: Catalog, catalog_url: str
) -> None:
    async with catalog.listen_slots() as listener:
        received = aiter(listener)
        pending = asyncio.ensure_future(anext(received))
        async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as admin:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query = 'LISTEN \"dormant_slots\"'"
            )
        with pytest.raises(CatalogUnavailable):
            await asyncio.wait_for(pending, 5)
