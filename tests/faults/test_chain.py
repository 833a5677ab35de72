"""A chain of calls, chain-parent.order → chain-child.apply, both requiring authentication.

The user travels down the chain (the child's runtime verifies the token the parent passed on and the
child's document is the user's), and a parent whose runtime is SIGKILLed after the child's effect
committed, but before the parent answered, is run again without doubling the child's effect: the
re-run derives the same child callId, and the child answers it from its store.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from e2e.mesh import ROOT, Mesh, running_mesh

from dormant import Client
from dormant.callid import child_call_id
from dormant_catalog import open_catalog
from dormant_local import MosquittoProcess

from .ledger import CALL_LEASE_S, children_of

PARENT = ROOT / "tests" / "fixtures" / "services" / "chain-parent"
CHILD = ROOT / "tests" / "fixtures" / "services" / "chain-child"
CHILD_TARGET = "chain-child.apply"
USER = "alice"
IN_FLIGHT = 10
SLEEP_AFTER_CHILD_MS = 5000
"""How long a parent lingers after its child answered: the window the SIGKILL lands in. Nothing
depends on it for correctness; a parent answered before the kill is simply not counted interrupted."""
CALL_TIMEOUT_S = 150.0
DEADLINE_S = 90.0


@dataclass(frozen=True)
class Document:
    id: str
    owner: str | None
    body: dict[str, Any]


@dataclass
class Chain:
    """A mesh serving chain-child on pod-child and chain-parent on pod-parent, and the runs file."""

    mesh: Mesh
    runs_file: Path

    async def setup(self) -> None:
        self.runs_file.touch()
        os.chmod(self.runs_file, 0o666)
        # The child first, alone, so pod-child can take nothing but its slot; then the parent on a
        # pod of its own: killing the parent's runtime leaves the child's alone.
        await self._serve(CHILD, "chain-child", "pod-child")
        await self._serve(PARENT, "chain-parent", "pod-parent")

    async def _serve(self, source: Path, service: str, pod_id: str) -> None:
        _, version = await self.mesh.publish(source)
        await self.mesh.deploy(service, version, replicas=1)
        self.mesh.start_pod(
            pod_id,
            1.0,
            extra_args=("--crash-backoff-reset", "0.1"),
            extra_env={"CHAIN_RUNS_FILE": str(self.runs_file), "DORMANT_CALL_LEASE_S": CALL_LEASE_S},
        )
        await self.mesh.wait_serving(service, timeout=DEADLINE_S)
        await wait_for(lambda: self._holds_slot(service, pod_id), f"{pod_id} holding {service}'s slot")

    async def _holds_slot(self, service: str, pod_id: str) -> bool:
        async with await open_catalog(self.mesh.catalog_url) as catalog:
            return any(slot.pod_id == pod_id for slot in await catalog.list_slots(service))

    def caller(self) -> Client:
        """A client calling as ``alice`` (a token of the dev key the pods' runtimes trust)."""
        token = self.mesh.identity.token(USER)
        return Client(self.mesh.broker_url, timeout=CALL_TIMEOUT_S, authorization=f"Bearer {token}")

    def run_lines(self) -> list[str]:
        """``order <callId>`` per parent run, ``apply <parentCallId>`` per child run, in order."""
        return self.runs_file.read_text().splitlines()

    def runs(self) -> collections.Counter[str]:
        return collections.Counter(self.run_lines())

    async def documents(self, service: str, collection: str) -> list[Document]:
        """Every document of ``service``'s ``collection``, read as the database owner (past row-level
        security), with its owner column."""
        async with await psycopg.AsyncConnection.connect(self.mesh.catalog_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT id, owner, body FROM dormant_data.documents WHERE service = %s AND collection = %s",
                (service, collection),
            )
            return [Document(row[0], row[1], row[2]) for row in await cur.fetchall()]

    async def child_effects(self) -> list[Document]:
        return await self.documents("chain-child", "effects")

    async def parent_orders(self) -> list[Document]:
        return await self.documents("chain-parent", "orders")

    def runtime_pids(self, pod_id: str) -> list[int]:
        return children_of(self.mesh.pods[pod_id].pid)


async def wait_for(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = DEADLINE_S) -> None:
    end = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > end:
            raise AssertionError(f"not reached within {timeout:g}s: {what}")
        await asyncio.sleep(0.1)


def per_key(documents: list[Document], key: str) -> collections.Counter[str]:
    return collections.Counter(str(doc.body.get(key)) for doc in documents)


@pytest.fixture
def chain(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> Iterator[Chain]:
    with running_mesh(broker.url, catalog_url, tmp_path) as mesh:
        yield Chain(mesh, tmp_path / "runs.txt")


async def test_the_user_travels_down_the_chain(chain: Chain) -> None:
    await chain.setup()
    async with chain.caller() as client:
        answer = await client.call("chain-parent", "order", {"item": "book"}, call_id="identity-1")
    assert answer["user"] == USER
    assert answer["childUser"] == USER  # the child's runtime verified alice's token, passed on

    (effect,) = await chain.child_effects()
    assert effect.body == {
        "parentCallId": "identity-1",
        "callId": child_call_id("identity-1", CHILD_TARGET, 1),
        "item": "book",
        "user": USER,
    }
    assert effect.owner == USER  # the document is alice's, not the parent service's
    assert effect.id == answer["childEffectId"]
    (order,) = await chain.parent_orders()
    assert order.owner == USER
    assert order.body["childEffectId"] == effect.id


@pytest.mark.timeout(400)
async def test_a_parent_run_again_after_a_sigkill_does_not_double_the_childs_effect(chain: Chain) -> None:
    await chain.setup()
    ids = [f"chain-kill-{i}" for i in range(IN_FLIGHT)]
    async with chain.caller() as client:
        warm_up = await client.call("chain-parent", "order", {"item": "warm-up"}, call_id="warm-up")
        parent_pid = warm_up["pid"]
        assert parent_pid in chain.runtime_pids("pod-parent")
        assert parent_pid not in chain.runtime_pids("pod-child")

        calls = {
            call_id: asyncio.create_task(
                client.call(
                    "chain-parent",
                    "order",
                    {"item": f"item-{call_id}", "ms": SLEEP_AFTER_CHILD_MS},
                    call_id=call_id,
                )
            )
            for call_id in ids
        }

        async def all_in_their_sleep() -> bool:
            """Every parent has run and its child's effect is committed (so it sleeps, or answered)."""
            runs = chain.runs()
            committed = per_key(await chain.child_effects(), "parentCallId")
            in_sleep = all(runs[f"order {i}"] >= 1 and committed[i] >= 1 for i in ids)
            return in_sleep or any(task.done() for task in calls.values())

        await wait_for(all_in_their_sleep, "every parent past its child call")
        committed_at_kill = {
            e.body["parentCallId"] for e in await chain.child_effects() if e.body["parentCallId"] in ids
        }
        runs_at_kill = len(chain.run_lines())
        assert parent_pid in chain.runtime_pids("pod-parent")
        os.kill(parent_pid, signal.SIGKILL)

        answers = dict(zip(calls, await asyncio.gather(*calls.values()), strict=True))

    assert [answers[i]["item"] for i in ids] == [f"item-{i}" for i in ids]  # 0 lost
    assert all(answers[i]["user"] == USER and answers[i]["childUser"] == USER for i in ids)
    # Interrupted: answered by a run in another process than the killed one. (A parent whose answer
    # the killed runtime had stored already is answered from the store, with the killed pid.)
    interrupted = [i for i in ids if answers[i]["pid"] != parent_pid]

    runs = chain.runs()
    child_runs_after_kill = collections.Counter(
        line.split(" ", 1)[1] for line in chain.run_lines()[runs_at_kill:] if line.startswith("apply ")
    )
    effects = [e for e in await chain.child_effects() if e.body["parentCallId"] in ids]
    orders = [o for o in await chain.parent_orders() if o.body["callId"] in ids]
    effect_by_parent = {e.body["parentCallId"]: e for e in effects}
    print(
        f"\n{len(ids)} chained calls, {len(interrupted)} interrupted by the kill and run again; parent runs "
        f"{sum(runs[f'order {i}'] for i in ids)}, child runs {sum(runs[f'apply {i}'] for i in ids)}, "
        f"child effects {len(effects)}, parent documents {len(orders)}"
    )
    assert interrupted, "the kill interrupted no parent"
    # The re-run happened: every interrupted parent ran again ...
    assert {i: runs[f"order {i}"] for i in interrupted if runs[f"order {i}"] < 2} == {}
    # ... and did not double the child: one effect per parent, under the child callId derived from the
    # parent's; a child whose effect had committed before the kill never ran again (the re-run
    # parent's call was answered from the child's store, with the first run's effect id).
    assert per_key(effects, "parentCallId") == collections.Counter(ids)
    assert {i: n for i, n in child_runs_after_kill.items() if i in committed_at_kill} == {}
    for call_id in ids:
        effect = effect_by_parent[call_id]
        assert effect.body["callId"] == child_call_id(call_id, CHILD_TARGET, 1)
        assert effect.owner == USER and effect.body["user"] == USER
        assert answers[call_id]["childEffectId"] == effect.id
    # One parent document per callId: the killed run's writes never committed.
    assert per_key(orders, "callId") == collections.Counter(ids)
    assert all(
        o.owner == USER and o.body["childEffectId"] == effect_by_parent[o.body["callId"]].id for o in orders
    )
