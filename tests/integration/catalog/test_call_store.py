"""``CallStore`` on a real database: lock order under contention, keys by function, input fingerprints,
callId bounds, re-claiming a row this owner lost track of, and the 0102 migration on existing rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from dormant_catalog import CatalogUnavailable, InvalidCatalogRequest, migrate
from dormant_catalog.calls import (
    CONFLICT_RETRIES,
    MAX_CALL_ID_BYTES,
    CallStore,
    Claim,
    fingerprint,
)
from dormant_catalog.migrate import load_migrations

FP_A = fingerprint({"item": "a"})
FP_B = fingerprint({"item": "b"})


@pytest_asyncio.fixture
async def stores(catalog_url: str) -> AsyncIterator[list[CallStore]]:
    await migrate(catalog_url)
    opened = [CallStore(catalog_url, app_name="svc", owner=f"owner-{i}", lease_s=30) for i in range(2)]
    for store in opened:
        await store.open()
    try:
        yield opened
    finally:
        for store in opened:
            await store.close()


def claims(ids: list[str], fp: bytes = FP_A, function: str = "record") -> list[Claim]:
    return [Claim(function, call_id, fp) for call_id in ids]


def test_the_fingerprint_is_of_the_canonical_input() -> None:
    assert fingerprint({"a": 1, "b": {"y": [1, 2], "x": None}}) == fingerprint(
        {"b": {"x": None, "y": [1, 2]}, "a": 1}
    )
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    assert fingerprint({"a": 1}) != fingerprint({"a": "1"})
    assert len(fingerprint({"big": 2**80})) == 32  # beyond orjson's integers: still a fingerprint


async def test_two_owners_claiming_and_completing_overlapping_batches_never_deadlock(
    stores: list[CallStore],
) -> None:
    """Both owners claim the same keys at once in opposite orders, then complete and renew them while
    the other claims again: before the single lock order this deadlocked (40P01) within a few rounds."""
    a, b = stores
    for round_ in range(15):
        ids = [f"r{round_}-{i:03d}" for i in range(150)]
        got_a, got_b = await asyncio.gather(a.claim(claims(ids)), b.claim(claims(ids[::-1])))
        winners = {k for k, s in got_a.items() if s.kind == "run"} | {
            k for k, s in got_b.items() if s.kind == "run"
        }
        assert len(winners) == len(ids)  # every key claimed exactly once
        assert not {k for k, s in got_a.items() if s.kind == "run"} & {
            k for k, s in got_b.items() if s.kind == "run"
        }
        mine_a = [k for k, s in got_a.items() if s.kind == "run"]
        mine_b = [k for k, s in got_b.items() if s.kind == "run"]
        await asyncio.gather(
            a.complete([(k, True, b"1") for k in reversed(mine_a)]),
            b.renew(mine_b[::-1]),
            b.claim(claims(ids)),
            a.renew(mine_a),
            b.complete([(k, True, b"2") for k in mine_b]),
            a.claim(claims(ids[::-1])),
        )
        done = await a.read([("record", i) for i in ids])
        assert {s.kind for s in done.values()} == {"done"}


async def test_a_statement_that_loses_a_deadlock_is_retried(
    stores: list[CallStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = stores[0]
    await store.claim(claims(["warm"]))
    assert store._claims is not None
    real_execute = store._claims.execute
    failures = {"left": 2}

    async def flaky_execute(*args: Any, **kwargs: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise psycopg.errors.DeadlockDetected("deadlock detected (injected)")
        return await real_execute(*args, **kwargs)

    monkeypatch.setattr(store._claims, "execute", flaky_execute)
    assert (await store.claim(claims(["after-deadlock"])))[("record", "after-deadlock")].kind == "run"
    assert failures["left"] == 0
    failures["left"] = CONFLICT_RETRIES + 1  # one more than it retries: reported as transient
    with pytest.raises(CatalogUnavailable, match="conflict"):
        await store.claim(claims(["never"]))


async def test_the_key_includes_the_function(stores: list[CallStore]) -> None:
    store = stores[0]
    assert (await store.claim(claims(["same-id"], function="record")))[("record", "same-id")].kind == "run"
    await store.complete([(("record", "same-id"), True, b'{"item":"a"}')])
    other = await store.claim(claims(["same-id"], function="other"))
    assert other[("other", "same-id")].kind == "run"  # another function's call, not record's answer
    again = await store.claim(claims(["same-id"], function="record"))
    assert again[("record", "same-id")].kind == "done"
    assert again[("record", "same-id")].response == b'{"item":"a"}'


async def test_a_reused_call_id_with_another_input_is_a_conflict(stores: list[CallStore]) -> None:
    a, b = stores
    await a.claim(claims(["reuse-done"]))
    await a.complete([(("record", "reuse-done"), True, b"{}")])
    assert (await a.claim(claims(["reuse-done"], FP_B)))[("record", "reuse-done")].kind == "conflict"
    assert (await a.claim(claims(["reuse-done"], FP_A)))[("record", "reuse-done")].kind == "done"
    # still running elsewhere: a duplicate waits, a reuse is refused
    await a.claim(claims(["reuse-running"]))
    assert (await b.claim(claims(["reuse-running"], FP_B)))[("record", "reuse-running")].kind == "conflict"
    assert (await b.claim(claims(["reuse-running"], FP_A)))[("record", "reuse-running")].kind == "running"
    # a dead owner's call is taken over only by a repeat of the same input
    async with await psycopg.AsyncConnection.connect(a.url, autocommit=True) as conn:
        await conn.execute("UPDATE call_results SET lease_expires_at = now() - interval '1 s'")
    assert (await b.claim(claims(["reuse-running"], FP_B)))[("record", "reuse-running")].kind == "conflict"
    assert (await b.claim(claims(["reuse-running"], FP_A)))[("record", "reuse-running")].kind == "run"
    # one batch, the same key twice with two inputs: the first is claimed, the second is a conflict
    both = await a.claim([Claim("record", "twice", FP_A), Claim("record", "twice", FP_B)])
    assert both[("record", "twice")].kind == "run" and both[("record", "twice")].fingerprint == FP_A


async def test_call_ids_over_the_limit_are_refused_before_the_database(stores: list[CallStore]) -> None:
    store = stores[0]
    longest = "é" * (MAX_CALL_ID_BYTES // 2)  # 512 bytes of UTF-8
    assert (await store.claim(claims([longest])))[("record", longest)].kind == "run"
    for bad in ("x" * (MAX_CALL_ID_BYTES + 1), "y" * 1400, "é" * 257, "nul\x00id"):
        with pytest.raises(InvalidCatalogRequest):
            await store.claim(claims([bad]))
    # the table refuses them too, whoever writes
    async with await psycopg.AsyncConnection.connect(store.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute(
                "INSERT INTO call_results (app_name, function, call_id, status)"
                " VALUES ('svc', 'f', %s, 'ok')",
                ("z" * 1400,),
            )


async def test_an_owner_can_claim_again_a_running_row_it_lost_track_of(stores: list[CallStore]) -> None:
    """After a commit cut off by a broken connection the row is still ours and running: claiming it
    again must say run (not wait a whole lease for ourselves)."""
    a, b = stores
    assert (await a.claim(claims(["lost"])))[("record", "lost")].kind == "run"
    again = (await a.claim(claims(["lost"])))[("record", "lost")]
    assert again.kind == "run" and again.attempts == 2
    assert (await b.claim(claims(["lost"])))[("record", "lost")].kind == "running"
    assert (await b.read([("record", "lost")]))[("record", "lost")].mine is False
    assert (await a.read([("record", "lost")]))[("record", "lost")].mine is True


async def test_release_renew_and_purge_touch_only_what_they_should(stores: list[CallStore]) -> None:
    a, b = stores
    await a.claim(claims(["mine-1", "mine-2"]))
    await b.release([("record", "mine-1")])  # not b's: stays
    await a.release([("record", "mine-2")])
    state = await a.read([("record", "mine-1"), ("record", "mine-2")])
    assert state[("record", "mine-1")].kind == "running" and state[("record", "mine-2")].kind == "absent"
    async with await psycopg.AsyncConnection.connect(a.url, autocommit=True) as conn:
        await conn.execute("UPDATE call_results SET expires_at = now() - interval '1 s'")
    assert await a.purge_expired() == 1


async def test_the_migration_keeps_existing_rows(catalog_url: str) -> None:
    """0102 on a database that has call_results rows from before: applied, and the old rows kept."""
    earlier = [m for m in load_migrations() if m.version < 102]
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for m in earlier:
            await conn.execute(m.sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (m.version, m.name, m.checksum),
            )
        await conn.execute(
            "INSERT INTO call_results (app_name, call_id, status, response) VALUES"
            " ('svc', 'old-done', 'ok', '1'), ('svc', 'old-running', 'running', NULL)"
        )
    assert "0102_call_keys.sql" in await migrate(catalog_url)
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT function, call_id, fingerprint FROM call_results ORDER BY call_id")
        assert await cur.fetchall() == [("", "old-done", None), ("", "old-running", None)]
    store = CallStore(catalog_url, app_name="svc", owner="new")
    await store.open()
    try:
        got = await store.claim(claims(["old-done"]))
        assert got[("record", "old-done")].kind == "run"  # a new key: (svc, record, old-done)
    finally:
        await store.close()
