"""``SlotListener``: a dedicated connection that LISTENs on ``dormant_slots`` and yields app names.

It waits on the connection's socket with the event loop (``add_reader``) and reads notifications with
libpq directly: psycopg's ``notifies()`` polls every 100 ms, which is most of an idle pod's CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import TracebackType

import psycopg
from psycopg import pq, sql

from .channels import SLOTS_CHANNEL
from .db import Conn, mapped_errors
from .errors import CatalogUnavailable


class SlotListener:
    """``async with catalog.listen_slots() as slots: async for app_name in slots: ...``

    LISTEN is in effect once ``__aenter__`` returns, so nothing notified after that is missed.
    A lost connection ends the iteration with ``CatalogUnavailable``; open a new listener then.
    """

    def __init__(self, url: str, *, channel: str = SLOTS_CHANNEL, connect_timeout: float = 10.0) -> None:
        self._url = url
        self._channel = channel
        self._connect_timeout = connect_timeout
        self._conn: Conn | None = None

    async def __aenter__(self) -> SlotListener:
        with mapped_errors():
            self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
            )
            try:
                await self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            except BaseException:
                await self._conn.close()
                raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._payloads()

    async def _payloads(self) -> AsyncIterator[str]:
        if self._conn is None:
            raise RuntimeError("use 'async with' before iterating a SlotListener")
        pgconn = self._conn.pgconn
        readable = asyncio.Event()
        loop = asyncio.get_running_loop()
        fd = pgconn.socket
        loop.add_reader(fd, readable.set)
        try:
            while True:
                try:
                    pgconn.consume_input()
                except psycopg.OperationalError as exc:
                    raise CatalogUnavailable(f"the LISTEN connection was lost: {exc}") from exc
                if pgconn.status != pq.ConnStatus.OK:
                    raise CatalogUnavailable("the LISTEN connection was lost")
                while (notify := pgconn.notifies()) is not None:
                    yield notify.extra.decode()
                await readable.wait()
                readable.clear()
        finally:
            loop.remove_reader(fd)
