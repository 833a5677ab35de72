"""``Deduplicator`` against an in-memory store: who owns a call in this process, and what never raises."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, cast

import pytest

from dormant_catalog import CatalogUnavailable, InvalidCatalogRequest
from dormant_catalog.calls import CallKey, CallState, CallStore, Claim, fingerprint
from dormant_runtime import dedup as dedup_module
from dormant_runtime.dedup import Deduplicator

FP = fingerprint({"item": "a"})
OTHER_FP = fingerprint({"item": "b"})


class MemoryStore:
    """The store's contract in memory: one owner (this process); rows can be changed by a test."""

    owner = "me"
    lease_s = 30.0

    def __init__(self) -> None:
        self.rows: dict[CallKey, dict[str, Any]] = {}
        self.fail_release = False
        self.released: list[CallKey] = []

    async def claim(self, claims: Sequence[Claim]) -> dict[CallKey, CallState]:
        await asyncio.sleep(0)
        found: dict[CallKey, CallState] = {}
        for claim in claims:
            if claim.key in found:
                continue
            row = self.rows.get(claim.key)
            if row is None or (row["status"] == "running" and row["owner"] == self.owner):
                if row is not None and row["fp"] != claim.fingerprint:
                    found[claim.key] = CallState("conflict", fingerprint=row["fp"])
                    continue
                self.rows[claim.key] = {"status": "running", "owner": self.owner, "fp": claim.fingerprint}
                found[claim.key] = CallState("run", fingerprint=claim.fingerprint)
            else:
                found[claim.key] = self._state(row)
        return found

    def _state(self, row: dict[str, Any]) -> CallState:
        if row["status"] == "running":
            return CallState("running", fingerprint=row["fp"], mine=row["owner"] == self.owner)
        return CallState("done", ok=True, response=row["response"], fingerprint=row["fp"])

    async def read(self, keys: Sequence[CallKey]) -> dict[CallKey, CallState]:
        return {k: self._state(self.rows[k]) if k in self.rows else CallState("absent") for k in keys}

    async def complete(self, results: Sequence[tuple[CallKey, bool, bytes]]) -> set[CallKey]:
        stored = set()
        for key, _, response in results:
            row = self.rows.get(key)
            if row and row["status"] == "running" and row["owner"] == self.owner:
                row.update(status="ok", response=response, owner=None)
                stored.add(key)
        return stored

    async def release(self, keys: Sequence[CallKey]) -> None:
        if self.fail_release:
            raise CatalogUnavailable("catalog database unreachable: restarting")
        self.released += keys
        for key in keys:
            self.rows.pop(key, None)

    async def renew(self, keys: Sequence[CallKey]) -> None:
        pass


def make() -> tuple[Deduplicator, MemoryStore]:
    store = MemoryStore()
    return Deduplicator(cast(CallStore, store)), store


async def test_two_claims_of_one_key_in_this_process_never_both_run() -> None:
    dedup, _ = make()
    claim = Claim("record", "c1", FP)
    first, second = await asyncio.gather(dedup.claim(claim), dedup.claim(claim))
    assert sorted([first.kind, second.kind]) == ["run", "running"]
    third = await dedup.claim(claim)  # a later batch, while the first still runs
    assert third.kind == "running" and third.mine
    assert await dedup.claim(Claim("record", "c1", OTHER_FP)) == CallState("conflict", fingerprint=FP)


async def test_a_lost_claim_leaves_no_stale_entry_and_is_claimed_again() -> None:
    """Item 2: after a fenced commit found its claim gone, the call must not stay in the renewed set,
    and a wait on it that finds the row this process owns must claim it (``run``), not wait forever."""
    dedup, _ = make()
    claim = Claim("record", "c2", FP)
    assert (await dedup.claim(claim)).kind == "run"
    assert dedup.running_keys() == [claim.key]
    dedup.settled(claim.key, True, b"{}", stored=False)  # the commit was cut off; the row is still ours
    assert dedup.running_keys() == []
    state = await asyncio.wait_for(dedup.wait(claim, deadline=time.time() + 5), 5)
    assert state.kind == "run"
    assert dedup.running_keys() == [claim.key]


async def test_local_duplicates_get_the_answer_or_move_to_the_store() -> None:
    dedup, _ = make()
    claim = Claim("record", "c3", FP)
    assert (await dedup.claim(claim)).kind == "run"
    waiter = asyncio.create_task(dedup.wait(claim, deadline=None))
    await asyncio.sleep(0)
    assert await dedup.finish(claim.key, True, b'{"ok":1}', None)
    assert await waiter == CallState("done", ok=True, response=b'{"ok":1}')


async def test_finishing_never_raises_when_the_store_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 3: a release that fails must not escape (the caller would acknowledge with no answer)."""
    monkeypatch.setattr(dedup_module, "FINISH_RETRY_S", 0.2)
    dedup, store = make()
    claim = Claim("record", "c4", FP)
    assert (await dedup.claim(claim)).kind == "run"
    waiter = asyncio.create_task(dedup.wait(claim, deadline=None))
    await asyncio.sleep(0)
    store.fail_release = True
    assert await dedup.finish(claim.key, False, b'{"type":"SystemError"}', "SystemError") is False
    assert (await waiter).kind == "done"  # local duplicates still get the answer
    assert dedup.running_keys() == []


async def test_finishing_retries_a_release_while_the_store_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dedup, store = make()
    claim = Claim("record", "c5", FP)
    await dedup.claim(claim)
    store.fail_release = True

    async def back_soon() -> None:
        await asyncio.sleep(0.1)
        store.fail_release = False

    back = asyncio.create_task(back_soon())
    assert await dedup.finish(claim.key, False, b"{}", "Unavailable") is True
    await back
    assert store.released == [claim.key]


async def test_a_call_id_the_store_cannot_keep_never_joins_a_batch() -> None:
    dedup, _ = make()
    good = asyncio.create_task(dedup.claim(Claim("record", "fine", FP)))
    with pytest.raises(InvalidCatalogRequest):
        await dedup.claim(Claim("record", "x" * 600, FP))
    assert (await good).kind == "run"
