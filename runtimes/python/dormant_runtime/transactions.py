"""``TransactionPool``: the Postgres transactions handlers get from ``ctx.transaction()``.

Connections come from a small pool, opened lazily; a transaction is open from the handler's first
statement until the runtime commits it (with the call's result) or rolls it back.
"""

from __future__ import annotations

from typing import Any

import psycopg
import psycopg_pool

from dormant.errors import Unavailable

Conn = psycopg.AsyncConnection[Any]


class TransactionPool:
    def __init__(self, url: str, *, max_size: int = 16, timeout_s: float = 10.0) -> None:
        self._pool: psycopg_pool.AsyncConnectionPool[Conn] = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=0,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            kwargs={"autocommit": False},
            name="dormant-handler-tx",
        )
        self._opened = False

    async def begin(self) -> Conn:
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True
        try:
            return await self._pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise Unavailable(f"no database connection for the handler's transaction: {exc}") from None

    async def end(self, conn: Conn, *, commit: bool) -> None:
        """Commit or roll back, and give the connection back (a broken one is discarded by the pool)."""
        try:
            if commit:
                await conn.commit()
            else:
                await conn.rollback()
        finally:
            await self._pool.putconn(conn)

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
