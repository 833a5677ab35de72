"""``SlotWaker``: sets an event whenever the catalog NOTIFYs ``dormant_slots`` (reconnecting as needed).

Idle pods wait on ``event`` between claim attempts; a serving pod ``watch``es its own service, so
its lease keeper renews at once when that service's slots change instead of at the next renewal.
Polling covers anything a lost connection missed.
"""

from __future__ import annotations

import asyncio
import logging

from dormant_catalog import Catalog

from .tasks import stop_task

log = logging.getLogger("dormant.sidecar")


class SlotWaker:
    def __init__(self, catalog: Catalog, *, max_backoff_s: float = 10.0) -> None:
        self._catalog = catalog
        self._max_backoff_s = max_backoff_s
        self.event = asyncio.Event()
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watchers: dict[str, set[asyncio.Event]] = {}

    def watch(self, app_name: str) -> asyncio.Event:
        """An event set on every NOTIFY about ``app_name`` (and after a reconnect)."""
        event = asyncio.Event()
        self._watchers.setdefault(app_name, set()).add(event)
        return event

    def unwatch(self, app_name: str, event: asyncio.Event) -> None:
        watchers = self._watchers.get(app_name)
        if watchers is not None:
            watchers.discard(event)
            if not watchers:
                del self._watchers[app_name]

    def _notify(self, app_name: str | None) -> None:
        self.event.set()
        for name, watchers in self._watchers.items():
            if app_name is None or name == app_name:
                for event in watchers:
                    event.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="slot-waker")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)  # not a bare cancel(): see tasks.py
            self._task = None

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with self._catalog.listen_slots() as listener:
                    delay = 0.5
                    self.listening.set()
                    self._notify(None)  # something may have changed while nobody listened
                    async for app_name in listener:
                        self._notify(app_name)
            except Exception as exc:  # reconnect on anything; polling covers the gap
                log.debug("slot listener lost (%s); reconnecting in %g s", exc, delay)
            self.listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._max_backoff_s)
