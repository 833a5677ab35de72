"""``Batcher``: coalesce concurrent requests into one call of a batch function.

Requests queued while a batch is in flight go out together in the next one, so an idle runtime pays
one round trip per request and a busy one pays one per batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")

MAX_BATCH = 500


class Batcher(Generic[K, R]):
    def __init__(self, run: Callable[[Sequence[K]], Awaitable[Sequence[R]]], *, name: str) -> None:
        self._run = run
        self._name = name
        self._pending: list[tuple[K, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def submit(self, item: K) -> asyncio.Future[R]:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=self._name)
        return future

    async def _loop(self) -> None:
        while self._pending:
            self._wake.clear()
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            try:
                results = await self._run([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
