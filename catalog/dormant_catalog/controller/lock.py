"""``LeaderLock``: exactly one active controller, by a session-level Postgres advisory lock.

The lock lives as long as its dedicated connection: a controller that dies (or loses the database)
lets the next one in. ``held()`` checks that the connection, and so the lock, is still there.
"""

from __future__ import annotations

import asyncio

import psycopg

from ..db import Conn

LOCK_KEY = 0x646F726D616E74  # "dormant"


class LeaderLock:
    def __init__(self, url: str, *, key: int = LOCK_KEY, poll_s: float = 0.5) -> None:
        self._url = url
        self._key = key
        self._poll_s = poll_s
        self._conn: Conn | None = None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this process holds the lock (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(
                        self._url, autocommit=True, connect_timeout=5
                    )
                cur = await self._conn.execute("SELECT pg_try_advisory_lock(%s)", (self._key,))
                row = await cur.fetchone()
                if row is not None and row[0]:
                    return True
            except psycopg.Error:
                await self.release()
            try:
                await asyncio.wait_for(stop.wait(), self._poll_s)
            except TimeoutError:
                pass
        return False

    async def held(self) -> bool:
        if self._conn is None or self._conn.closed:
            return False
        try:
            await self._conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    async def release(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
