"""callId de-duplication in a runtime: claim before running, store the answer, wait on duplicates.

``Deduplicator`` sits between the server and ``dormant_catalog.calls.CallStore``. A call is keyed by
(function, callId) within the service and carries the fingerprint of its input; a repeat with
another input is a ``conflict``. Claims and completions are batched. A call this process owns is in
``_local`` from the moment its claim succeeds (registered by the batch itself, so two claims of one
key in this process can never both get ``run``) until the store holds its answer (or its claim is
released, lost or abandoned); only those keys have their leases renewed. The store hands a row this
process owns to a claim of this process again (``run``), so a call leaving ``_local`` before its answer
is stored would let a duplicate arriving meanwhile run the handler a second time. The answers stored a
moment ago (``_recent``, for one lease) cover the other side of that window: a claim the store granted
just before the answer was stored, whose result is processed after the call left ``_local``, gets the
stored answer instead of a second run. A duplicate of a call this process is running waits on an
in-process future; a duplicate of a call another runtime runs polls the store until it finishes,
until the other runtime's lease expires and this one takes the call over, or until a row this
process owns but no longer runs (its commit was cut off) is claimed again.

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
from dataclasses import dataclass

from dormant_catalog import CatalogUnavailable, InvalidCatalogRequest
from dormant_catalog.calls import CallKey, CallState, CallStore, Claim, call_id_problem

from .batching import Batcher

log = logging.getLogger("dormant.runtime")

STORED_ERROR_TYPES = frozenset(
    {"ValidationError", "BusinessLogicError", "NotFound", "Unauthenticated", "Forbidden"}
)
POLL_MIN_S = 0.01
POLL_MAX_S = 0.2
PURGE_EVERY_S = 60.0
FINISH_RETRY_S = 5.0
"""How long storing an answer (or releasing a claim) is retried while the store is unreachable."""


@dataclass(slots=True)
class _Running:
    """A call this process owns: its input fingerprint, and the answer its duplicates wait for."""

    fingerprint: bytes
    future: asyncio.Future[tuple[bool, bytes]]


class Deduplicator:
    def __init__(self, store: CallStore) -> None:
        self.store = store
        self._claims: Batcher[Claim, CallState] = Batcher(self._claim_batch, name="dedup-claims")
        self._completions: Batcher[tuple[CallKey, bool, bytes], bool] = Batcher(
            self._complete_batch, name="dedup-completions"
        )
        self._local: dict[CallKey, _Running] = {}
        self._recent: dict[CallKey, tuple[float, bool, bytes]] = {}
        """Answers this process stored lately (monotonic expiry, ok, response), oldest first."""
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

    def running_keys(self) -> list[CallKey]:
        """The calls this process owns right now (their leases are renewed)."""
        return list(self._local)

    async def _claim_batch(self, claims: Sequence[Claim]) -> list[CallState]:
        found = await self.store.claim(claims)
        states = []
        now = time.monotonic()
        for claim in claims:
            state = found[claim.key]
            if state.kind == "run" and claim.key not in self._local:
                recent = self._recent.get(claim.key)
                if recent is not None and recent[0] > now:
                    # Granted just before our own answer was stored: that answer is this call's.
                    state = CallState("done", ok=recent[1], response=recent[2], fingerprint=state.fingerprint)
            if state.kind == "run":
                running = self._local.get(claim.key)
                if running is None:
                    self._local[claim.key] = _Running(
                        claim.fingerprint, asyncio.get_running_loop().create_future()
                    )
                else:  # ours already: an earlier claim of this batch, or of an earlier one, runs it
                    state = CallState("running", fingerprint=running.fingerprint, mine=True)
            if state.kind != "conflict" and not state.matches(claim.fingerprint):
                state = CallState("conflict", fingerprint=state.fingerprint)
            states.append(state)
        return states

    async def _complete_batch(self, items: Sequence[tuple[CallKey, bool, bytes]]) -> list[bool]:
        stored = await self.store.complete(items)
        return [item[0] in stored for item in items]

    async def claim(self, claim: Claim) -> CallState:
        """Claim a call: ``run`` (ours now), ``done`` (answer stored), ``running`` (wait) or ``conflict``.

        Raises ``CatalogUnavailable`` when the store cannot be reached (nothing was claimed then), and
        ``InvalidCatalogRequest`` for a callId the store cannot keep (checked here, so that one bad
        callId never fails the batch it would have joined).
        """
        problem = call_id_problem(claim.call_id)
        if problem is not None:
            raise InvalidCatalogRequest(problem)
        running = self._local.get(claim.key)
        if running is not None:
            if running.fingerprint != claim.fingerprint:
                return CallState("conflict", fingerprint=running.fingerprint)
            return CallState("running", fingerprint=running.fingerprint, mine=True)
        future = self._claims.submit(claim)
        try:
            return await future
        except asyncio.CancelledError:
            # Cut off (draining) after the claim succeeded: give it back rather than renew it forever.
            if future.done() and not future.cancelled() and future.exception() is None:
                if future.result().kind == "run":
                    await self.abandon(claim.key)
            raise

    async def wait(self, claim: Claim, deadline: float | None) -> CallState:
        """Wait for a call someone else runs: ``done``, ``conflict``, or ``run`` if it became ours.

        Raises ``TimeoutError`` at the deadline. The store being unreachable for a while only delays
        the answer: it is polled until the deadline.
        """
        key = claim.key
        delay = POLL_MIN_S
        while True:
            running = self._local.get(key)
            if running is not None:
                if running.fingerprint != claim.fingerprint:
                    return CallState("conflict", fingerprint=running.fingerprint)
                timeout = None if deadline is None else max(0.0, deadline - time.time())
                try:
                    ok, response = await asyncio.wait_for(asyncio.shield(running.future), timeout)
                    return CallState("done", ok=ok, response=response)
                except asyncio.CancelledError:
                    if not running.future.cancelled():
                        raise  # this task itself is being cancelled
                    # the local run lost its claim: find out from the store who finishes it
            if deadline is not None and time.time() >= deadline:
                raise TimeoutError(claim.call_id)
            try:
                state = (await self.store.read([key]))[key]
                if state.kind != "absent" and not state.matches(claim.fingerprint):
                    return CallState("conflict", fingerprint=state.fingerprint)
                if state.kind == "done":
                    return state
                # Free, abandoned by a dead owner, or owned by this process but run by no task of it.
                if state.kind == "absent" or state.lease_expired or (state.mine and key not in self._local):
                    claimed = await self.claim(claim)
                    if claimed.kind != "running":
                        return claimed
                    if key in self._local:
                        continue  # a task of this process runs it now: wait on it
            except CatalogUnavailable as exc:
                log.info("[%s] waiting for the store: %s", claim.call_id, exc)
            pause = delay if deadline is None else min(delay, max(0.0, deadline - time.time()))
            await asyncio.sleep(pause)
            delay = min(delay * 2, POLL_MAX_S)

    async def finish(self, key: CallKey, ok: bool, response: bytes, error_type: str | None) -> bool:
        """Record how the call we ran ended (store it, or release the claim) and wake local duplicates.

        Never raises: a store that stays unreachable for ``FINISH_RETRY_S`` is logged, and the claim
        then ends with its lease. Returns False in that case or when the claim was lost.
        """
        # Duplicates get the answer now; the call stays ours (in ``_local``: a duplicate's claim waits on
        # it instead of being granted the row we still own) until the store holds the answer.
        local = self._local.get(key)
        if local is not None and not local.future.done():
            local.future.set_result((ok, response))
        try:
            keep = ok or error_type in STORED_ERROR_TYPES
            give_up = time.monotonic() + FINISH_RETRY_S
            delay = 0.05
            while True:
                try:
                    if keep:
                        if await self._completions.submit((key, ok, response)):
                            self._remember(key, ok, response)
                            return True
                        log.warning("[%s] the claim was taken over; the answer was not stored", key[1])
                        return False
                    await self.store.release([key])
                    return True
                except CatalogUnavailable as exc:
                    if time.monotonic() + delay > give_up:
                        log.warning(
                            "[%s] could not %s: %s",
                            key[1],
                            "store the answer" if keep else "release the claim",
                            exc,
                        )
                        return False
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                except Exception as exc:
                    log.warning("[%s] could not record the call's end: %s", key[1], exc)
                    return False
        finally:
            if local is not None and self._local.get(key) is local:
                del self._local[key]

    def _remember(self, key: CallKey, ok: bool, response: bytes) -> None:
        """Keep a just-stored answer for one lease (the longest a claim granted before it can lag)."""
        now = time.monotonic()
        while self._recent:
            oldest = next(iter(self._recent))
            if self._recent[oldest][0] > now:
                break
            del self._recent[oldest]
        self._recent.pop(key, None)
        self._recent[key] = (now + self.store.lease_s, ok, response)

    def settled(self, key: CallKey, ok: bool, response: bytes, *, stored: bool) -> None:
        """The answer was stored by the caller's own transaction (``stored``), or the claim was lost."""
        local = self._local.pop(key, None)
        if stored:
            self._remember(key, ok, response)
        if local is not None and not local.future.done():
            if stored:
                local.future.set_result((ok, response))
            else:
                local.future.cancel()

    async def abandon(self, key: CallKey) -> None:
        """Give a claim back without an answer (the call was cut off while draining)."""
        local = self._local.pop(key, None)
        if local is not None and not local.future.done():
            local.future.cancel()
        with contextlib.suppress(Exception):
            await self.store.release([key])

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
