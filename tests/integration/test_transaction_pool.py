"""``TransactionPool`` across a Postgres restart: handlers never get a connection the restart killed."""

from __future__ import annotations

import uuid

import psycopg

from dormant_local import LocalPostgres
from dormant_runtime.transactions import TransactionPool, is_broken


async def test_after_a_restart_the_pool_hands_out_live_connections(fresh_pg: LocalPostgres) -> None:
    url = await fresh_pg.create_database(f"tx_{uuid.uuid4().hex[:8]}")
    pool = TransactionPool(url, max_size=4, timeout_s=20)
    try:
        held = [await pool.begin() for _ in range(4)]
        for conn in held:
            await conn.execute("SELECT 1")
            await pool.end(conn, commit=False)  # back in the pool, idle
        await fresh_pg.restart()
        for _ in range(8):  # every idle connection was killed by the restart
            conn = await pool.begin()
            cur = await conn.execute("SELECT 42")  # the handler's first statement
            assert await cur.fetchone() == (42,)
            await pool.end(conn, commit=True)
    finally:
        await pool.close()


async def test_a_transaction_cut_off_by_a_restart_is_seen_as_broken(fresh_pg: LocalPostgres) -> None:
    url = await fresh_pg.create_database(f"tx_{uuid.uuid4().hex[:8]}")
    pool = TransactionPool(url, max_size=2, timeout_s=20)
    try:
        conn = await pool.begin()
        await conn.execute("SELECT 1")  # a handler inside its transaction
        await fresh_pg.restart()
        try:
            await conn.execute("SELECT 2")
        except psycopg.OperationalError:
            pass
        assert is_broken(conn)
        await pool.end(conn, commit=False)  # rolling back a lost connection does not raise
        again = await pool.begin()
        await again.execute("SELECT 3")
        await pool.end(again, commit=True)
    finally:
        await pool.close()
