"""``SlotWaker``: sets an event whenever the catalog NOTIFYs ``dormant_slots`` (reconnecting as needed).

Idle pods wait on it between claim attempts; polling covers anything a lost connection missed.
"""

from __future__ import annotations

import asyncio
import logging

from dormant_catalog import Catalog

log = logging.getLogger("dormant.sidecar")


class SlotWaker:
    def __init__(self, catalog: Catalog, *, max_backoff_s: float = 10.0) -> None:
        self._catalog = catalog
        self._max_backoff_s = max_backoff_s
        self.event = asyncio.Event()
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="slot-waker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self._catalog.listen_slots() as listener:
                    delay = 0.5
                    self.listening.set()
                    self.event.set()  # something may have changed while nobody listened
                    async for _ in listener:
                        self.event.set()
            except Exception as exc:  # reconnect on anything; polling covers the gap
                log.debug("slot listener lost (%s); reconnecting in %g s", exc, delay)
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)
