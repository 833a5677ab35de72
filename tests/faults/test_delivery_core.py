"""The callId store under contention and loss: one callId at two runtimes at once, a fenced commit that
finds its claim taken, and a database restart while handlers hold transactions."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from pathlib import Path

import psycopg
from e2e.mesh import running_mesh

from dormant import Client, errors
from dormant_local import LocalPostgres, MosquittoProcess

from .ledger import LEDGER, Ledger, doubled

BURSTS = 12
BURST = 60


async def test_the_same_call_ids_at_two_runtimes_at_once_under_load(ledger: Ledger) -> None:
    """Two clients send the same callIds at the same moment, in opposite orders, so both runtimes claim
    overlapping batches: no deadlock may surface as an answer, every pair gets one answer, one effect."""
    await ledger.setup(replicas=2)
    ledger.start_pod("pod-1")
    ledger.start_pod("pod-2")
    await ledger.mesh.wait_serving("ledger-service")
    prefix = uuid.uuid4().hex[:6]
    failed: dict[str, str] = {}
    answers: dict[str, list[object]] = {}
    async with (
        Client(ledger.mesh.broker_url, timeout=30) as first,
        Client(ledger.mesh.broker_url, timeout=30) as second,
    ):

        async def one(client: Client, call_id: str) -> None:
            try:
                answer = await client.call(
                    "ledger-service", "record", {"item": call_id, "ms": 5}, call_id=call_id
                )
            except errors.DormantError as exc:
                failed[call_id] = exc.type
            else:
                answers.setdefault(call_id, []).append(answer)

        ids: list[str] = []
        for burst in range(BURSTS):
            batch = [f"{prefix}-{burst}-{i}" for i in range(BURST)]
            ids += batch
            await asyncio.gather(
                *(one(first, call_id) for call_id in batch),
                *(one(second, call_id) for call_id in reversed(batch)),
            )
    effects = await ledger.effects()
    print(
        f"\ntwo runtimes, {len(ids)} callIds sent twice: {len(failed)} failed,"
        f" runs {sum(ledger.runs()[i] for i in ids)}"
    )
    assert failed == {}
    assert all(len(answers[i]) == 2 and answers[i][0] == answers[i][1] for i in ids)
    assert doubled(effects, ids) == {}
    assert all(effects[i] == 1 for i in ids)
    pods = ledger.mesh.pod_log("pod-1") + ledger.mesh.pod_log("pod-2")
    assert "deadlock" not in pods


async def test_a_fenced_commit_that_lost_its_claim_still_answers(ledger: Ledger) -> None:
    """The claim row is taken from under a running handler (as if this runtime froze past its lease):
    its commit is refused, and the call must then be run again once it is free and answered, with
    its effect once. Before, the runtime re-claimed it, ignored that and never answered."""
    await ledger.setup(replicas=1)
    ledger.start_pod("pod-1")
    await ledger.mesh.wait_serving("ledger-service")
    call_id = f"stolen-{uuid.uuid4().hex[:6]}"
    async with Client(ledger.mesh.broker_url, timeout=30) as client:
        call = asyncio.create_task(
            client.call("ledger-service", "record", {"item": "x", "ms": 1500}, call_id=call_id)
        )
        deadline = time.monotonic() + 20
        while ledger.runs()[call_id] < 1:
            assert time.monotonic() < deadline and not call.done()
            await asyncio.sleep(0.01)
        async with await psycopg.AsyncConnection.connect(ledger.mesh.catalog_url, autocommit=True) as conn:
            cur = await conn.execute(
                "UPDATE call_results SET owner = 'thief', lease_expires_at = now() + interval '300 ms'"
                " WHERE call_id = %s AND status = 'running' RETURNING owner",
                (call_id,),
            )
            assert await cur.fetchall() == [("thief",)]
        answer = await asyncio.wait_for(call, 25)
    assert answer["item"] == "x"
    assert ledger.runs()[call_id] == 2  # the first run's writes were rolled back, the second committed
    assert (await ledger.effects())[call_id] == 1
    async with await psycopg.AsyncConnection.connect(ledger.mesh.catalog_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT status, owner FROM call_results WHERE call_id = %s", (call_id,))
        assert await cur.fetchall() == [("ok", None)]


HOLDING = 12


async def test_postgres_restarted_while_handlers_hold_transactions(
    broker: MosquittoProcess, fresh_pg: LocalPostgres, tmp_path: Path
) -> None:
    """Handlers are inside their transactions (a row written, not committed) when Postgres restarts:
    every call is answered with its result (run again on a fresh connection), never SystemError, and
    each effect happens once."""
    source = tmp_path / "ledger-hold"
    shutil.copytree(LEDGER, source, ignore=shutil.ignore_patterns("generated", "__pycache__"))
    handler = (source / "ledger.py").read_text()
    sleep_first = (
        "        if request.ms:\n            await asyncio.sleep(request.ms / 1000)\n"
        "        await ctx.data.insert("
    )
    assert sleep_first in handler
    # The variant writes first and then holds its transaction open for ``ms``.
    held = handler.replace(sleep_first, "        await ctx.data.insert(").replace(
        "        return RecordResponse(",
        "        if request.ms:\n            await asyncio.sleep(request.ms / 1000)\n"
        "        return RecordResponse(",
    )
    (source / "ledger.py").write_text(held)
    catalog_url = await fresh_pg.create_database(f"dormant_{uuid.uuid4().hex[:8]}")
    with running_mesh(broker.url, catalog_url, tmp_path) as mesh:
        ledger = Ledger(mesh, tmp_path / "runs.txt")
        await ledger.setup(replicas=2, source=source)
        ledger.start_pod("pod-1")
        ledger.start_pod("pod-2")
        await mesh.wait_serving("ledger-service")
        ids = [f"hold-{i}" for i in range(HOLDING)]
        failed: dict[str, str] = {}
        async with Client(mesh.broker_url, timeout=45) as client:

            async def one(call_id: str) -> object:
                try:
                    return await client.call(
                        "ledger-service", "record", {"item": call_id, "ms": 1500}, call_id=call_id
                    )
                except errors.DormantError as exc:
                    failed[call_id] = exc.type
                    return None

            calls = [asyncio.create_task(one(call_id)) for call_id in ids]
            deadline = time.monotonic() + 20
            while await ledger.sessions_in_transaction() < HOLDING:
                assert time.monotonic() < deadline, "the handlers never all held a transaction"
                await asyncio.sleep(0.02)
            await fresh_pg.restart()
            answers = await asyncio.gather(*calls)
        effects = await ledger.effects()
        print(
            f"\nrestart with {HOLDING} open transactions: {len(failed)} failed {failed},"
            f" runs {sum(ledger.runs().values())}"
        )
        assert failed == {}
        assert [a["item"] for a in answers if isinstance(a, dict)] == ids
        assert doubled(effects, ids) == {}
        assert all(effects[i] == 1 for i in ids)


async def test_a_call_id_reused_with_another_input_is_refused(ledger: Ledger) -> None:
    """The stored answer belongs to the first input: a reuse with another one gets ``Conflict``."""
    await ledger.setup(replicas=1)
    ledger.start_pod("pod-1")
    await ledger.mesh.wait_serving("ledger-service")
    call_id = f"reuse-{uuid.uuid4().hex[:6]}"
    async with Client(ledger.mesh.broker_url, timeout=20) as client:
        first = await client.call("ledger-service", "record", {"item": "a", "ms": 0}, call_id=call_id)
        try:
            await client.call("ledger-service", "record", {"item": "b"}, call_id=call_id)
        except errors.Conflict as exc:
            assert call_id in exc.message
        else:
            raise AssertionError("a reused callId with another input was answered")
        # the same input in another key order and spacing is the same call
        again = await client.call("ledger-service", "record", {"ms": 0, "item": "a"}, call_id=call_id)
    assert first["item"] == "a" and again == first
    assert ledger.runs()[call_id] == 1
    assert (await ledger.effects())[call_id] == 1
