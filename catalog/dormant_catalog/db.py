"""The connection pool behind a ``Catalog``, and the mapping of driver errors to catalog errors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import psycopg
import psycopg_pool
from psycopg.rows import TupleRow

from .errors import CatalogUnavailable, ImmutableVersion

IMMUTABLE_SQLSTATE = "DM001"

Conn = psycopg.AsyncConnection[TupleRow]


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Turn connection trouble into ``CatalogUnavailable`` and trigger refusals into ``ImmutableVersion``."""
    try:
        yield
    except psycopg_pool.PoolTimeout as exc:
        raise CatalogUnavailable(f"catalog database unreachable: {exc}") from exc
    except psycopg.OperationalError as exc:
        raise CatalogUnavailable(f"catalog database unreachable: {exc}") from exc
    except psycopg.Error as exc:
        if exc.sqlstate == IMMUTABLE_SQLSTATE:
            raise ImmutableVersion(exc.diag.message_primary or str(exc)) from exc
        raise


class Database:
    """A small pool of autocommit connections; ``transaction()`` for multi-statement work."""

    def __init__(self, url: str, *, min_size: int, max_size: int, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self._pool: psycopg_pool.AsyncConnectionPool[Conn] = psycopg_pool.AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
            check=psycopg_pool.AsyncConnectionPool.check_connection,
            name="dormant-catalog",
        )

    async def open(self) -> None:
        with mapped_errors():
            await self._pool.open(wait=True, timeout=self.timeout)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled autocommit connection: each statement commits on its own."""
        with mapped_errors():
            async with self._pool.connection() as conn:
                yield conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection inside one transaction, committed when the block ends without error."""
        with mapped_errors():
            async with self._pool.connection() as conn, conn.transaction():
                yield conn
