"""callId de-duplication in a runtime: claim before running, store the answer, wait on duplicates.

``Deduplicator`` sits between the server and ``dormant_catalog.calls.CallStore``. Claims and
completions are batched. A duplicate of a call this process is running waits on an in-process
future; a duplicate of a call another runtime runs polls the store until it finishes, or until the
other runtime's lease expires and this one takes the call over. Leases of running calls are renewed
in the background; expired results are purged now and then.

Only deterministic outcomes are stored (results, ``ValidationError``, ``BusinessLogicError``,
``NotFound``, ``Unauthenticated``, ``Forbidden``). After a ``SystemError``, ``TimeoutError`` or
``Unavailable`` the claim is released, so a retry with the same callId runs the handler again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from dormant_catalog.calls import CallState, CallStore

from .batching import Batcher

log = logging.getLogger("dormant.runtime")

STORED_ERROR_TYPES = frozenset(
    {"ValidationError", "BusinessLogicError", "NotFound", "Unauthenticated", "Forbidden"}
)
POLL_MIN_S = 0.01
POLL_MAX_S = 0.2
PURGE_EVERY_S = 60.0


class Deduplicator:
    def __init__(self, store: CallStore) -> None:
        self.store = store
        self._claims: Batcher[str, CallState] = Batcher(self._claim_batch, name="dedup-claims")
        self._completions: Batcher[tuple[str, bool, bytes], bool] = Batcher(
            self._complete_batch, name="dedup-completions"
        )
        self._local: dict[str, asyncio.Future[tuple[bool, bytes]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.store.open()
        self._tasks = [
            asyncio.create_task(self._renew_leases(), name="dedup-leases"),
            asyncio.create_task(self._purge(), name="dedup-purge"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._claims.close()
        await self._completions.close()
        running = list(self._local)
        if running:
            with contextlib.suppress(Exception):
                await self.store.release(running)
        await self.store.close()

    async def _claim_batch(self, call_ids: Sequence[str]) -> list[CallState]:
        found = await self.store.claim(call_ids)
        return [found[call_id] for call_id in call_ids]

    async def _complete_batch(self, items: Sequence[tuple[str, bool, bytes]]) -> list[bool]:
        stored = await self.store.complete(items)
        return [item[0] in stored for item in items]

    async def claim(self, call_id: str) -> CallState:
        """Claim ``call_id``: ``run`` (ours now), ``done`` (answer stored) or ``running`` (wait)."""
        if call_id in self._local:
            return CallState("running")
        state = await self._claims.submit(call_id)
        if state.kind == "run":
            if call_id in self._local:  # a duplicate in the same batch got here first
                return CallState("running")
            self._local[call_id] = asyncio.get_running_loop().create_future()
        return state

    async def wait(self, call_id: str, deadline: float | None) -> CallState:
        """Wait for a call someone else runs; ``done``, or ``run`` if it became ours. Raises TimeoutError."""
        local = self._local.get(call_id)
        if local is not None:
            timeout = None if deadline is None else max(0.0, deadline - time.time())
            try:
                ok, response = await asyncio.wait_for(asyncio.shield(local), timeout)
                return CallState("done", ok=ok, response=response)
            except asyncio.CancelledError:
                if not local.cancelled():
                    raise  # this task itself is being cancelled
                # the local run lost its claim: find out from the store who finishes it
        delay = POLL_MIN_S
        while deadline is None or time.time() < deadline:
            state = (await self.store.read([call_id]))[call_id]
            if state.kind == "done":
                return state
            if state.kind == "absent" or state.lease_expired:
                claimed = await self.claim(call_id)
                if claimed.kind != "running":
                    return claimed
            await asyncio.sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)
        raise TimeoutError(call_id)

    async def finish(self, call_id: str, ok: bool, response: bytes, error_type: str | None) -> None:
        """Record how the call we ran ended (store it, or release the claim) and wake local duplicates."""
        local = self._local.pop(call_id, None)
        try:
            if ok or error_type in STORED_ERROR_TYPES:
                if not await self._completions.submit((call_id, ok, response)):
                    log.warning("[%s] the claim was taken over; the answer was not stored", call_id)
            else:
                await self.store.release([call_id])
        finally:
            if local is not None and not local.done():
                local.set_result((ok, response))

    async def settled(self, call_id: str, ok: bool, response: bytes, *, stored: bool) -> None:
        """The answer was stored by the caller's own transaction (``stored``), or the claim was lost."""
        local = self._local.pop(call_id, None)
        if local is not None and not local.done():
            if stored:
                local.set_result((ok, response))
            else:
                local.cancel()

    async def abandon(self, call_id: str) -> None:
        """Give a claim back without an answer (the call was cut off while draining)."""
        local = self._local.pop(call_id, None)
        if local is not None and not local.done():
            local.cancel()
        with contextlib.suppress(Exception):
            await self.store.release([call_id])

    async def _renew_leases(self) -> None:
        interval = self.store.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            running = list(self._local)
            if running:
                try:
                    await self.store.renew(running)
                except Exception as exc:
                    log.warning("cannot renew the leases of %d running calls: %s", len(running), exc)

    async def _purge(self) -> None:
        while True:
            await asyncio.sleep(PURGE_EVERY_S)
            try:
                removed = await self.store.purge_expired()
            except Exception as exc:
                log.debug("purging expired call results failed: %s", exc)
            else:
                if removed:
                    log.info("purged %d expired call results", removed)
