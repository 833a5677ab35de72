"""The local Postgres server and the database fixtures: queries, restarts, crashes, fresh databases."""

from __future__ import annotations

import psycopg
import pytest

from dormant_local import ExternalPostgres, LocalPostgres


async def _scalar(url: str, query: str) -> object:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute(query)).fetchone()
    assert row is not None
    return row[0]


async def test_catalog_url_is_a_fresh_empty_database(catalog_url: str) -> None:
    tables = await _scalar(catalog_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    assert tables == 0
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO t VALUES (1)")
    assert await _scalar(catalog_url, "SELECT count(*) FROM t") == 1


async def test_pg_admin_url_reaches_the_server(
    pg_admin_url: str, pg: LocalPostgres | ExternalPostgres
) -> None:
    assert pg_admin_url.endswith("/postgres")
    assert await _scalar(pg_admin_url, "SELECT current_database()") == "postgres"
    url = await pg.create_database("dormant_test_explicit")
    try:
        assert url == pg.url_for("dormant_test_explicit")
        assert await _scalar(url, "SELECT current_database()") == "dormant_test_explicit"
    finally:
        await pg.drop_database("dormant_test_explicit")


async def test_restart_keeps_port_and_data(fresh_pg: LocalPostgres) -> None:
    url = await fresh_pg.create_database("keep")
    assert await fresh_pg.create_database("keep") == url
    with pytest.raises(psycopg.errors.DuplicateDatabase):
        await fresh_pg.create_database("keep", exist_ok=False)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE kept (v text)")
        await conn.execute("INSERT INTO kept VALUES ('before restart')")
    port = fresh_pg.port
    await fresh_pg.restart()
    assert fresh_pg.port == port
    assert await _scalar(url, "SELECT v FROM kept") == "before restart"


async def test_kill_then_start_recovers(fresh_pg: LocalPostgres) -> None:
    url = await fresh_pg.create_database("crash")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE c (v int)")
        await conn.execute("INSERT INTO c VALUES (42)")
    fresh_pg.kill()
    assert not fresh_pg.running
    await fresh_pg.start()
    assert await _scalar(url, "SELECT v FROM c") == 42
    assert await _scalar(fresh_pg.admin_url, "SELECT 1") == 1
