"""One callId in flight many times at once, against a real broker, catalog database and Python runtime.

Two promises are checked: ``dormant.Client`` answers every one of several concurrent calls that share a
callId (they used to overwrite each other's pending entry, so all but one waited for the timeout), and
the runtime runs the handler once however many deliveries of one callId arrive together (from several
clients, and from one client's own concurrent calls). Handler runs are counted by the conformance
service's ``tally`` (runs per key in the runtime process): a later ``tally`` of the same key with a fresh
callId answers how many runs there were before it, plus one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from conformance.harness import RUNTIMES, Caller, RuntimeProcess, wait_ready

from dormant import Client, Conflict
from dormant_catalog.migrate import migrate
from dormant_local import ExternalPostgres, LocalPostgres, MosquittoProcess

SERVICE = "conformance"


@pytest_asyncio.fixture(scope="module")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MosquittoProcess]:
    server = MosquittoProcess(data_dir=tmp_path_factory.mktemp("same-callid-broker"))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest_asyncio.fixture(scope="module")
async def catalog(pg: LocalPostgres | ExternalPostgres) -> AsyncIterator[str]:
    name = f"dormant_same_callid_{uuid.uuid4().hex[:12]}"
    url = await pg.create_database(name, exist_ok=False)
    try:
        await migrate(url)
        yield url
    finally:
        await pg.drop_database(name)


@pytest.fixture(scope="module")
def runtime(
    broker: MosquittoProcess, catalog: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    """The Python runtime serving the conformance service standalone (as the conformance suite does)."""
    kind = RUNTIMES["python"]
    reason = kind.missing()
    if reason is not None:
        pytest.fail(reason, pytrace=False)
    log_dir: Path = tmp_path_factory.mktemp("same-callid-runtime")
    process = RuntimeProcess(
        kind, broker_url=broker.url, catalog_url=catalog, log_file=log_dir / "runtime.log"
    )
    process.start()
    caller = Caller("127.0.0.1", broker.port)
    try:
        wait_ready(process, caller)
        yield process
    finally:
        caller.close()
        process.stop()


async def _runs_so_far(client: Client, key: str) -> int:
    """How many times ``tally`` ran for ``key`` before now (this call, with a fresh callId, adds one)."""
    answer = await client.call(SERVICE, "tally", {"key": key}, timeout=30)
    return int(answer["runs"]) - 1


async def test_concurrent_calls_with_one_call_id_on_one_client_all_get_the_answer(
    runtime: RuntimeProcess, broker: MosquittoProcess
) -> None:
    """Eight concurrent calls with one callId from one client: every one returns the one answer."""
    async with Client(broker.url, timeout=20) as client:
        for _ in range(3):
            key = f"one-client-{uuid.uuid4().hex[:8]}"
            call_id = f"same-{uuid.uuid4().hex}"
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(client.call(SERVICE, "tally", {"key": key}, call_id=call_id) for _ in range(8))
                ),
                15,  # well under the calls' 20 s timeout: a call left waiting would hang until then
            )
            assert answers == [{"key": key, "runs": 1}] * 8
            assert await _runs_so_far(client, key) == 1


async def test_same_call_id_with_another_input_on_one_client_waits_its_turn(
    runtime: RuntimeProcess, broker: MosquittoProcess
) -> None:
    """A concurrent call with the callId of one in flight but another input or function is not handed the
    first call's answer: it is sent once the first is answered, and gets its own (here the runtime's
    ``Conflict`` for the reused callId, and the other function's own result)."""
    async with Client(broker.url, timeout=20) as client:
        key = f"other-input-{uuid.uuid4().hex[:8]}"
        call_id = f"reused-{uuid.uuid4().hex}"
        results = await asyncio.wait_for(
            asyncio.gather(
                client.call(SERVICE, "sleep", {"ms": 300, "key": key}, call_id=call_id),
                client.call(SERVICE, "sleep", {"ms": 1, "key": key}, call_id=call_id),
                client.call(SERVICE, "echo", {"text": "mine"}, call_id=call_id),
                return_exceptions=True,
            ),
            15,
        )
        assert results[0] == {"slept": 300}
        assert isinstance(results[1], Conflict), results[1]
        assert isinstance(results[2], dict) and results[2].get("text") == "mine", results[2]
        assert await _runs_so_far(client, key) == 1


async def test_one_call_id_from_many_clients_at_once_runs_the_handler_once(
    runtime: RuntimeProcess, broker: MosquittoProcess
) -> None:
    """Many rounds; in each, twenty clients send one callId all at once (the first answer is stored while
    later copies still arrive): the handler runs once per callId, and every client gets its answer."""
    clients = [Client(broker.url, timeout=30) for _ in range(20)]
    for client in clients:
        await client.connect()
    try:
        keys = []
        for _ in range(40):
            key = f"many-{uuid.uuid4().hex[:10]}"
            keys.append(key)
            answers = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        client.call(SERVICE, "tally", {"key": key}, call_id=key)
                        for client in clients
                    )
                ),
                25,
            )
            assert answers == [{"key": key, "runs": 1}] * len(clients)
        runs = await asyncio.gather(*(_runs_so_far(clients[0], key) for key in keys))
        assert runs == [1] * len(keys), {k: r for k, r in zip(keys, runs, strict=True) if r != 1}
        assert "the answer was not stored" not in runtime.log_text()
    finally:
        for client in clients:
            await client.close()
