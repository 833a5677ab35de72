"""``Deduplicator`` around the moment an answer is stored: a duplicate of the call then never runs it again.

The store grants a row this process owns to a claim of this process (``run``), so two windows matter:
a duplicate claimed while the answer is being stored (the call must still be local then), and a claim the
store granted just before the answer was stored whose result is processed after (it must get the answer).
Against an in-memory store whose operations a test can hold at a gate.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import cast

from test_dedup import FP, MemoryStore

from dormant_catalog.calls import CallKey, CallState, CallStore, Claim
from dormant_runtime.dedup import Deduplicator


class GatedStore(MemoryStore):
    """``MemoryStore`` whose ``complete`` and ``claim`` can be held (after doing their work, for a claim)."""

    def __init__(self) -> None:
        super().__init__()
        self.complete_gate = asyncio.Event()
        self.complete_gate.set()
        self.completing = asyncio.Event()
        self.claim_gate = asyncio.Event()
        self.claim_gate.set()
        self.claimed = asyncio.Event()

    async def complete(self, results: Sequence[tuple[CallKey, bool, bytes]]) -> set[CallKey]:
        self.completing.set()
        await self.complete_gate.wait()
        return await super().complete(results)

    async def claim(self, claims: Sequence[Claim]) -> dict[CallKey, CallState]:
        found = await super().claim(claims)
        self.claimed.set()
        await self.claim_gate.wait()
        return found


async def test_a_duplicate_claimed_while_the_answer_is_stored_waits_for_it() -> None:
    store = GatedStore()
    dedup = Deduplicator(cast(CallStore, store))
    claim = Claim("record", "w1", FP)
    assert (await dedup.claim(claim)).kind == "run"
    store.complete_gate.clear()
    finishing = asyncio.create_task(dedup.finish(claim.key, True, b'{"n":1}', None))
    await asyncio.wait_for(store.completing.wait(), 5)
    # The answer is on its way to the store, which would grant the row (still ours) to a new claim.
    duplicate = await dedup.claim(claim)
    assert duplicate.kind == "running" and duplicate.mine
    assert await asyncio.wait_for(dedup.wait(claim, time.time() + 5), 5) == CallState(
        "done", ok=True, response=b'{"n":1}'
    )
    assert dedup.running_keys() == [claim.key]  # its lease is still renewed until the answer is stored
    store.complete_gate.set()
    assert await asyncio.wait_for(finishing, 5) is True
    assert dedup.running_keys() == []
    assert (await dedup.claim(claim)).kind == "done"


async def test_a_claim_granted_just_before_the_answer_was_stored_gets_the_answer() -> None:
    store = GatedStore()
    dedup = Deduplicator(cast(CallStore, store))
    claim = Claim("record", "w2", FP)
    assert (await dedup.claim(claim)).kind == "run"
    # A second claim reaches the store while the call runs (the row is ours: the store says ``run``) ...
    store.claimed.clear()
    store.claim_gate.clear()
    late = dedup._claims.submit(claim)
    await asyncio.wait_for(store.claimed.wait(), 5)
    # ... and its result is processed only after the call finished and its answer was stored.
    assert await dedup.finish(claim.key, True, b'{"n":1}', None) is True
    assert dedup.running_keys() == []
    store.claim_gate.set()
    state = await asyncio.wait_for(late, 5)
    assert (state.kind, state.ok, state.response) == ("done", True, b'{"n":1}')
    assert dedup.running_keys() == []


async def test_an_answer_stored_with_the_handlers_writes_is_remembered_too() -> None:
    store = GatedStore()
    dedup = Deduplicator(cast(CallStore, store))
    claim = Claim("record", "w3", FP)
    assert (await dedup.claim(claim)).kind == "run"
    store.claimed.clear()
    store.claim_gate.clear()
    late = dedup._claims.submit(claim)
    await asyncio.wait_for(store.claimed.wait(), 5)
    store.rows[claim.key].update(status="ok", response=b'{"n":2}', owner=None)  # the handler's commit
    dedup.settled(claim.key, True, b'{"n":2}', stored=True)
    store.claim_gate.set()
    state = await asyncio.wait_for(late, 5)
    assert (state.kind, state.response) == ("done", b'{"n":2}')


async def test_a_released_claim_is_not_remembered() -> None:
    """A non-stored outcome (the claim is released): a later claim runs the handler again."""
    dedup = Deduplicator(cast(CallStore, GatedStore()))
    claim = Claim("record", "w4", FP)
    assert (await dedup.claim(claim)).kind == "run"
    assert await dedup.finish(claim.key, False, b'{"type":"SystemError"}', "SystemError") is True
    assert (await dedup.claim(claim)).kind == "run"
