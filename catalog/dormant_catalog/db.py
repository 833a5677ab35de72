"""``Database``: the one connection pool a process keeps to the catalog, and the mapping of driver
errors to catalog errors.

Every query is a function of a connection, ``fn(conn, ...)``, in the module that owns its table;
``await db.run(fn, ...)`` runs one in a transaction on a pooled connection, and ``db.connection()`` /
``db.transaction()`` hold one for several.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Concatenate, ParamSpec, TypeVar

import psycopg
import psycopg_pool
from psycopg.rows import TupleRow

from .errors import CatalogUnavailable, ImmutableVersion

IMMUTABLE_SQLSTATE = "DM001"

# SQLSTATEs (or their two-character classes) that say "try again": the connection is gone or the server
# is going down or starting (08, 57P0x), it is out of resources for now (53), or the statement lost a
# deadlock, a serialization check or a lock wait and was rolled back (40001, 40P01, 55P03, 57014).
# Other errors (a row over the index size limit, 54000, say) are answers about the request itself.
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "53"})
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"})
CONFLICT_SQLSTATES = frozenset({"40001", "40P01"})

Conn = psycopg.AsyncConnection[TupleRow]
P = ParamSpec("P")
T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """True for a driver error that the same statement may not meet again (see ``TRANSIENT_SQLSTATES``)."""
    if not isinstance(exc, psycopg.Error):
        return False
    state = exc.sqlstate
    if state is None:  # raised by the client: the connection failed or broke
        return isinstance(exc, psycopg.OperationalError)
    return state in TRANSIENT_SQLSTATES or state[:2] in TRANSIENT_SQLSTATE_CLASSES


@contextmanager
def mapped_errors() -> Iterator[None]:
    """Turn transient trouble into ``CatalogUnavailable`` and trigger refusals into ``ImmutableVersion``.

    Any other driver error propagates unchanged: it is about the statement, and retrying cannot help.
    """
    try:
        yield
    except psycopg_pool.PoolTimeout as exc:
        raise CatalogUnavailable(f"catalog database unreachable: {exc}") from exc
    except psycopg.Error as exc:
        if exc.sqlstate == IMMUTABLE_SQLSTATE:
            raise ImmutableVersion(exc.diag.message_primary or str(exc)) from exc
        if exc.sqlstate in CONFLICT_SQLSTATES:
            raise CatalogUnavailable(f"catalog database conflict (retry): {exc}") from exc
        if is_transient(exc):
            raise CatalogUnavailable(f"catalog database unreachable: {exc}") from exc
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

    async def run(
        self, query: Callable[Concatenate[Conn, P], Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``await query(conn, *args, **kwargs)`` in one transaction on a pooled connection."""
        async with self.transaction() as conn:
            return await query(conn, *args, **kwargs)
