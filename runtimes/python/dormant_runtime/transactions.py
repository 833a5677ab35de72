"""``TransactionPool``: the Postgres transactions handlers get from ``ctx.transaction()``.

Connections come from a small pool, opened lazily; a transaction is open from the handler's first
statement until the runtime commits it (with the call's result) or rolls it back.

A pooled connection is checked before it is handed out (``check_alive``), so a database restart never
reaches a handler as a dead connection: the check is free for a healthy idle connection (its socket
has nothing to read) and costs one round trip only when the server said something while it sat idle
(after a restart: its goodbye, then end of file). A connection that breaks later, while the handler
uses it, is seen by the runtime (``is_broken``) and the call is run again on a fresh one.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
import psycopg_pool

from dormant.errors import Unavailable

Conn = psycopg.AsyncConnection[Any]


def is_broken(conn: Conn) -> bool:
    """True once the connection was lost (every statement on it fails from then on)."""
    return bool(conn.closed or conn.broken)


async def check_alive(conn: Conn) -> None:
    """Raise if ``conn`` is dead: the pool then discards it and hands out another one."""
    if is_broken(conn):
        raise psycopg.OperationalError("the connection is closed")
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        readable = [True]
    if readable:  # an idle connection has nothing to read unless the server closed it (or notified)
        await psycopg_pool.AsyncConnectionPool.check_connection(conn)


class TransactionPool:
    def __init__(self, url: str, *, max_size: int = 16, timeout_s: float = 10.0) -> None:
        self._pool: psycopg_pool.AsyncConnectionPool[Conn] = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=0,
            max_size=max_size,
            open=False,
            timeout=timeout_s,
            kwargs={"autocommit": False},
            check=check_alive,
            name="dormant-handler-tx",
        )
        self._opened = False

    async def begin(self) -> Conn:
        """A checked connection; ``Unavailable`` when none can be had within the pool's timeout."""
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True
        try:
            return await self._pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise Unavailable(f"no database connection for the handler's transaction: {exc}") from None
        except psycopg.OperationalError as exc:
            raise Unavailable(
                f"the database connection for the handler's transaction failed: {exc}"
            ) from None

    async def end(self, conn: Conn, *, commit: bool) -> None:
        """Commit or roll back, and give the connection back (a broken one is discarded by the pool).

        A rollback of a connection that is already lost has nothing to undo and does not raise.
        """
        try:
            if commit:
                await conn.commit()
            elif not is_broken(conn):
                await conn.rollback()
        finally:
            await self._pool.putconn(conn)

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
