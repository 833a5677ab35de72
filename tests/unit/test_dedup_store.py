"""The call de-duplication store without a database: ``CallStore``'s rules (fingerprints, callId limits,
batching, retries after lost deadlocks, reconnecting) on a scripted connection, and the parts of
``Deduplicator`` around it (leases, purging, closing, waiting on another runtime's run).

The SQL itself runs against Postgres in tests/integration/catalog/test_call_store.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import psycopg
import pytest

from dormant_catalog import CatalogUnavailable, InvalidCatalogRequest
from dormant_catalog import calls as calls_module
from dormant_catalog.calls import (
    CONFLICT_RETRIES,
    MAX_CALL_ID_BYTES,
    CallKey,
    CallState,
    CallStore,
    Claim,
    call_id_problem,
    fingerprint,
)
from dormant_runtime import dedup as dedup_module
from dormant_runtime.dedup import Deduplicator

FP = fingerprint({"n": 1})
OTHER_FP = fingerprint({"n": 2})

# ------------------------------------------------------------------------------------------ pure rules


def test_the_fingerprint_ignores_key_order_but_not_values() -> None:
    assert fingerprint({"a": 1, "b": {"x": 1, "y": 2}}) == fingerprint({"b": {"y": 2, "x": 1}, "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 1.0})
    assert fingerprint({"a": [1, 2]}) != fingerprint({"a": [2, 1]})
    assert len(fingerprint(None)) == 32


def test_the_fingerprint_of_integers_beyond_64_bits_is_stable() -> None:
    huge = {"n": 2**70, "m": "é"}
    assert fingerprint(huge) == fingerprint({"m": "é", "n": 2**70})
    assert fingerprint(huge) != fingerprint({"n": 2**70 + 1, "m": "é"})


@pytest.mark.parametrize(
    ("call_id", "problem"),
    [
        ("order-17", None),
        ("é" * (MAX_CALL_ID_BYTES // 2), None),
        ("é" * (MAX_CALL_ID_BYTES // 2) + "x", "at most 512 bytes"),
        ("a\x00b", "NUL"),
        ("\ud800", "valid UTF-8"),
    ],
)
def test_call_id_limits(call_id: str, problem: str | None) -> None:
    found = call_id_problem(call_id)
    assert (found is None) if problem is None else (found is not None and problem in found)


def test_a_state_matches_its_own_input_or_an_unknown_one() -> None:
    assert CallState("done", fingerprint=FP).matches(FP)
    assert not CallState("done", fingerprint=FP).matches(OTHER_FP)
    assert CallState("running").matches(OTHER_FP)  # a row written before fingerprints were kept
    assert Claim("f", "c", FP).key == ("f", "c")


# ------------------------------------------------------------------------------------------ CallStore


@dataclass
class Cursor:
    rows: list[tuple[Any, ...]]
    description: Any = ("column",)

    async def fetchall(self) -> list[tuple[Any, ...]]:
        return self.rows

    async def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


@dataclass
class ScriptedConn:
    """Answers each statement with the next scripted result (rows, or an exception to raise)."""

    script: list[list[tuple[Any, ...]] | Exception] = field(default_factory=list)
    statements: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    closed: bool = False

    async def execute(self, sql: str, params: dict[str, Any], prepare: bool = False) -> Cursor:
        self.statements.append((sql, params))
        result = self.script.pop(0) if self.script else []
        if isinstance(result, Exception):
            raise result
        return Cursor(result)

    async def close(self) -> None:
        self.closed = True


def store_with(*conns: ScriptedConn, monkeypatch: pytest.MonkeyPatch) -> CallStore:
    """A store whose connections are ``conns``, handed out in order as it connects."""
    store = CallStore("postgresql://unused", app_name="svc", owner="me", version=2, lease_s=7.0)
    pending = list(conns)

    async def connect() -> ScriptedConn:
        return pending.pop(0)

    monkeypatch.setattr(store, "_connect", connect)
    monkeypatch.setattr(calls_module, "CONFLICT_BACKOFF_S", 0.0)
    return store


def deadlock() -> psycopg.Error:
    return psycopg.errors.DeadlockDetected("deadlock detected")


async def test_a_claim_sends_each_key_once_with_its_first_fingerprint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    claims_conn = ScriptedConn([[("f", "a", 0), ("f", "b", 1)]])
    store = store_with(claims_conn, ScriptedConn(), monkeypatch=monkeypatch)
    await store.open()
    found = await store.claim([Claim("f", "a", FP), Claim("f", "b", FP), Claim("f", "a", OTHER_FP)])
    assert found == {
        ("f", "a"): CallState("run", fingerprint=FP),
        ("f", "b"): CallState("run", attempts=1, fingerprint=FP),
    }
    [(_, params)] = claims_conn.statements
    assert params["ids"] == ["a", "b"] and params["fingerprints"] == [FP, FP]
    assert (params["app"], params["owner"], params["lease"], params["version"]) == ("svc", "me", 7.0, 2)


async def test_keys_a_claim_did_not_get_are_read_back(monkeypatch: pytest.MonkeyPatch) -> None:
    read_rows = [
        ("f", "done", "ok", b'{"r":1}', FP, True, False),
        ("f", "failed", "error", None, FP, True, False),
        ("f", "busy", "running", None, FP, False, False),
        ("f", "reused", "ok", b"{}", OTHER_FP, True, False),
    ]
    claims_conn = ScriptedConn([[], read_rows])
    store = store_with(claims_conn, ScriptedConn(), monkeypatch=monkeypatch)
    await store.open()
    keys = ["done", "failed", "busy", "reused", "released"]
    found = await store.claim([Claim("f", k, FP) for k in keys])
    assert found[("f", "done")] == CallState("done", ok=True, response=b'{"r":1}', fingerprint=FP)
    assert found[("f", "failed")] == CallState("done", ok=False, response=b"", fingerprint=FP)
    assert found[("f", "busy")] == CallState("running", fingerprint=FP)
    assert found[("f", "reused")] == CallState("conflict", fingerprint=OTHER_FP)
    # Released between the claim and the read: the caller waits and claims again.
    assert found[("f", "released")] == CallState("running")


async def test_a_bad_call_id_fails_the_claim_before_any_statement(monkeypatch: pytest.MonkeyPatch) -> None:
    claims_conn = ScriptedConn()
    store = store_with(claims_conn, ScriptedConn(), monkeypatch=monkeypatch)
    await store.open()
    with pytest.raises(InvalidCatalogRequest, match="NUL"):
        await store.claim([Claim("f", "ok", FP), Claim("f", "a\x00", FP)])
    assert await store.claim([]) == {}
    assert await store.complete([]) == set()
    await store.release([])
    await store.renew([])
    assert claims_conn.statements == []


async def test_a_statement_that_loses_a_deadlock_is_retried_then_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = ScriptedConn([deadlock(), deadlock(), [("f", "a")]])
    store = store_with(ScriptedConn(), other, monkeypatch=monkeypatch)
    await store.open()
    assert await store.complete([(("f", "a"), True, b"1")]) == {("f", "a")}
    assert len(other.statements) == 3
    other.script = [deadlock() for _ in range(CONFLICT_RETRIES + 1)]
    with pytest.raises(CatalogUnavailable, match="conflict"):
        await store.release([("f", "a")])
    assert len(other.statements) == 3 + CONFLICT_RETRIES + 1


async def test_other_driver_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    other = ScriptedConn([psycopg.errors.UniqueViolation("duplicate key"), psycopg.OperationalError("gone")])
    store = store_with(ScriptedConn(), other, monkeypatch=monkeypatch)
    await store.open()
    with pytest.raises(psycopg.errors.UniqueViolation):
        await store.renew([("f", "a")])
    with pytest.raises(CatalogUnavailable, match="unreachable"):  # a broken connection: try later
        await store.read([("f", "a")])
    assert len(other.statements) == 2


async def test_a_closed_connection_is_replaced_on_the_next_statement(monkeypatch: pytest.MonkeyPatch) -> None:
    first, replacement = ScriptedConn(), ScriptedConn([[(1,), (1,)]])
    store = store_with(ScriptedConn(), first, replacement, monkeypatch=monkeypatch)
    await store.open()
    first.closed = True
    assert await store.purge_expired(limit=10) == 2
    assert first.statements == [] and replacement.statements[0][1] == {"limit": 10}
    await store.close()
    assert replacement.closed


async def test_one_result_and_a_batch_of_results_are_stored_fenced(monkeypatch: pytest.MonkeyPatch) -> None:
    other = ScriptedConn([[("f", "a")], [("f", "b")]])
    store = store_with(ScriptedConn(), other, monkeypatch=monkeypatch)
    await store.open()
    assert await store.complete([(("f", "a"), False, b"e")]) == {("f", "a")}
    stored = await store.complete([(("f", "b"), True, b"1"), (("f", "c"), True, b"2")])
    assert stored == {("f", "b")}  # c is someone else's now
    (_, one), (_, batch) = other.statements
    assert (one["status"], one["id"], one["owner"]) == ("error", "a", "me")
    assert batch["statuses"] == ["ok", "ok"] and batch["ids"] == ["b", "c"]


async def test_an_answer_stored_inside_the_handlers_transaction_uses_its_connection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = store_with(ScriptedConn(), ScriptedConn(), monkeypatch=monkeypatch)
    handler_tx = ScriptedConn([[("f", "a")], []])
    conn = cast(psycopg.AsyncConnection[Any], handler_tx)
    assert await store.complete_in(conn, ("f", "a"), True, b"1") is True
    assert await store.complete_in(conn, ("f", "a"), True, b"1") is False  # no longer ours
    assert handler_tx.statements[0][1]["status"] == "ok"


# ------------------------------------------------------------------------------------------ Deduplicator


class MemoryStore:
    """The store's contract in memory, counting what the deduplicator asked of it."""

    owner = "me"

    def __init__(self, lease_s: float = 30.0) -> None:
        self.lease_s = lease_s
        self.rows: dict[CallKey, CallState] = {}
        self.renewed: list[list[CallKey]] = []
        self.released: list[CallKey] = []
        self.purges = 0
        self.fail: Exception | None = None
        self.read_failures = 0
        self.opened = self.closed = False
        self.complete_result: bool | None = None

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True

    async def claim(self, claims: Sequence[Claim]) -> dict[CallKey, CallState]:
        await asyncio.sleep(0)
        found = {}
        for claim in claims:
            row = self.rows.get(claim.key)
            if row is None or (row.kind == "running" and (row.mine or row.lease_expired)):
                self.rows[claim.key] = CallState("running", fingerprint=claim.fingerprint, mine=True)
                found[claim.key] = CallState("run", fingerprint=claim.fingerprint)
            else:
                found[claim.key] = row
        return found

    async def read(self, keys: Sequence[CallKey]) -> dict[CallKey, CallState]:
        if self.read_failures:
            self.read_failures -= 1
            raise CatalogUnavailable("restarting")
        return {k: self.rows.get(k, CallState("absent")) for k in keys}

    async def complete(self, results: Sequence[tuple[CallKey, bool, bytes]]) -> set[CallKey]:
        if self.fail is not None:
            raise self.fail
        if self.complete_result is False:
            return set()
        for key, ok, response in results:
            self.rows[key] = CallState("done", ok=ok, response=response, fingerprint=FP)
        return {key for key, _, _ in results}

    async def release(self, keys: Sequence[CallKey]) -> None:
        if self.fail is not None:
            raise self.fail
        self.released += keys
        for key in keys:
            self.rows.pop(key, None)

    async def renew(self, keys: Sequence[CallKey]) -> None:
        self.renewed.append(list(keys))
        if self.fail is not None:
            raise self.fail

    async def purge_expired(self) -> int:
        self.purges += 1
        if self.fail is not None:
            raise self.fail
        return 3


def dedup_on(store: MemoryStore) -> Deduplicator:
    return Deduplicator(cast(CallStore, store))


async def until(condition: Any, timeout: float = 10.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not reached in time"
        await asyncio.sleep(0.005)


async def test_leases_of_running_calls_are_renewed_and_expired_results_purged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dedup_module, "PURGE_EVERY_S", 0.01)
    store = MemoryStore(lease_s=0.03)
    dedup = dedup_on(store)
    await dedup.start()
    assert store.opened
    claim = Claim("f", "long", FP)
    assert (await dedup.claim(claim)).kind == "run"
    await until(lambda: [claim.key] in store.renewed and store.purges >= 2)
    # Trouble renewing or purging is logged; the loops go on.
    store.fail = CatalogUnavailable("restarting")
    renewed = len(store.renewed)
    await until(lambda: len(store.renewed) > renewed + 1)
    store.fail = None
    await dedup.finish(claim.key, True, b"1", None)
    renewed = len(store.renewed)
    await asyncio.sleep(0.1)
    assert all(claim.key not in keys for keys in store.renewed[renewed:])  # finished: no more renewals
    await dedup.close()
    assert store.closed


async def test_closing_gives_back_the_claims_still_running() -> None:
    store = MemoryStore()
    dedup = dedup_on(store)
    await dedup.start()
    await dedup.claim(Claim("f", "cut-off", FP))
    await dedup.close()
    assert store.released == [("f", "cut-off")] and store.rows == {}


async def test_a_claim_cancelled_after_it_succeeded_is_given_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A drain cuts a call off just as its claim succeeded: the claim goes back rather than being
    renewed forever by a process that will never run it."""
    store = MemoryStore()
    dedup = dedup_on(store)
    claim = Claim("f", "cancelled", FP)
    submit = dedup._claims.submit
    tasks: list[asyncio.Task[CallState]] = []

    def submit_then_cancel_on_answer(item: Claim) -> asyncio.Future[CallState]:
        future = submit(item)
        # Runs before the caller wakes up with the answer: the caller is cancelled in between.
        future.add_done_callback(lambda _: tasks[0].cancel())
        return future

    monkeypatch.setattr(dedup._claims, "submit", submit_then_cancel_on_answer)
    tasks.append(asyncio.create_task(dedup.claim(claim)))
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    assert store.released == [claim.key]
    assert dedup.running_keys() == []
    await dedup.close()


async def test_a_local_duplicate_with_another_input_is_a_conflict() -> None:
    dedup = dedup_on(MemoryStore())
    assert (await dedup.claim(Claim("f", "c", FP))).kind == "run"
    assert await dedup.wait(Claim("f", "c", OTHER_FP), None) == CallState("conflict", fingerprint=FP)
    await dedup.close()


async def test_a_waiter_whose_local_run_lost_its_claim_asks_the_store() -> None:
    store = MemoryStore()
    dedup = dedup_on(store)
    claim = Claim("f", "lost", FP)
    assert (await dedup.claim(claim)).kind == "run"
    waiter = asyncio.create_task(dedup.wait(claim, time.time() + 10))
    await asyncio.sleep(0.01)
    # The run's commit was cut off; meanwhile another runtime stored the answer.
    store.rows[claim.key] = CallState("done", ok=True, response=b'"other"', fingerprint=FP)
    dedup.settled(claim.key, True, b'"mine"', stored=False)
    assert await asyncio.wait_for(waiter, 10) == CallState(
        "done", ok=True, response=b'"other"', fingerprint=FP
    )
    await dedup.close()


async def test_waiting_on_another_runtime_polls_through_an_outage_until_it_finishes() -> None:
    store = MemoryStore()
    dedup = dedup_on(store)
    claim = Claim("f", "theirs", FP)
    store.rows[claim.key] = CallState("running", fingerprint=FP, mine=False)
    store.read_failures = 2
    waiter = asyncio.create_task(dedup.wait(claim, None))
    await until(lambda: store.read_failures == 0)
    assert not waiter.done()
    store.rows[claim.key] = CallState("done", ok=False, response=b"{}", fingerprint=FP)
    assert (await asyncio.wait_for(waiter, 10)).kind == "done"
    await dedup.close()


async def test_waiting_on_another_runtime_ends_at_the_deadline_or_on_a_reused_id() -> None:
    store = MemoryStore()
    dedup = dedup_on(store)
    claim = Claim("f", "theirs", FP)
    store.rows[claim.key] = CallState("running", fingerprint=FP, mine=False)
    with pytest.raises(TimeoutError):
        await dedup.wait(claim, time.time() + 0.1)
    assert await dedup.wait(Claim("f", "theirs", OTHER_FP), None) == CallState("conflict", fingerprint=FP)
    await dedup.close()


async def test_a_call_whose_owner_died_is_taken_over_by_a_waiter() -> None:
    store = MemoryStore()
    dedup = dedup_on(store)
    claim = Claim("f", "orphan", FP)
    store.rows[claim.key] = CallState("running", fingerprint=FP, mine=False)
    waiter = asyncio.create_task(dedup.wait(claim, None))
    await asyncio.sleep(0.02)
    store.rows[claim.key] = CallState("running", fingerprint=FP, lease_expired=True)
    assert (await asyncio.wait_for(waiter, 10)).kind == "run"
    assert dedup.running_keys() == [claim.key]
    await dedup.close()


async def test_finishing_reports_a_lost_claim_and_store_errors_without_raising() -> None:
    store = MemoryStore()
    dedup = dedup_on(store)
    taken = Claim("f", "taken", FP)
    await dedup.claim(taken)
    store.complete_result = False
    assert await dedup.finish(taken.key, True, b"1", None) is False  # another runtime owns it now
    broken = Claim("f", "broken", FP)
    await dedup.claim(broken)
    store.fail = ValueError("unexpected")
    assert await dedup.finish(broken.key, False, b"{}", "SystemError") is False
    assert dedup.running_keys() == []
    store.fail = None
    await dedup.close()


async def test_abandoning_wakes_local_waiters_to_ask_the_store() -> None:
    store = MemoryStore()
    dedup = dedup_on(store)
    claim = Claim("f", "abandoned", FP)
    await dedup.claim(claim)
    waiter = asyncio.create_task(dedup.wait(claim, None))
    await asyncio.sleep(0.01)
    await dedup.abandon(claim.key)
    # The row was released, so the waiter claims the call itself.
    assert (await asyncio.wait_for(waiter, 10)).kind == "run"
    assert store.released == [claim.key]
    await dedup.close()
