"""Migrations on a real database: applied once, in order, safe when several processes start together."""

from __future__ import annotations

import asyncio

import psycopg

from dormant_catalog import migrate, open_catalog
from dormant_catalog.migrate import load_migrations


async def _tables(url: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row[0] for row in await cur.fetchall()}


async def test_migrations_apply_once(catalog_url: str) -> None:
    names = [m.name for m in load_migrations()]
    assert await migrate(catalog_url) == names
    assert await migrate(catalog_url) == []
    assert {
        "schema_migrations",
        "application_catalog",
        "application_deployments",
        "replica_slots",
        "pods",
        "aliases",
        "audit_log",
        "call_results",
    } <= await _tables(catalog_url)
    async with await psycopg.AsyncConnection.connect(catalog_url) as conn:
        cur = await conn.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert [row[1] for row in await cur.fetchall()] == names


async def test_concurrent_migrations_apply_each_file_once(catalog_url: str) -> None:
    results = await asyncio.gather(*(migrate(catalog_url) for _ in range(6)))
    names = [m.name for m in load_migrations()]
    assert sorted(results, key=len, reverse=True) == [names] + [[]] * 5


async def test_open_catalog_migrates_unless_told_not_to(catalog_url: str) -> None:
    cat = await open_catalog(catalog_url, migrate=False)
    await cat.close()
    assert "application_catalog" not in await _tables(catalog_url)
    async with await open_catalog(catalog_url) as cat:
        assert await cat.latest_version("nothing") is None
    assert "application_catalog" in await _tables(catalog_url)
