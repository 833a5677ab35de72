"""Fixtures of the conformance suite: per runtime, a private broker, a migrated catalog database and one
runtime serving the conformance service standalone (shared by the suite's modules: one start per
runtime), plus a raw MQTT 5 caller that sees every message on the broker.

``runtime_kind`` is parametrized over ``harness.RUNTIMES`` (``DORMANT_CONFORMANCE_RUNTIMES`` narrows it).
A runtime whose build is missing fails its tests with the reason, unless
``DORMANT_CONFORMANCE_RUNTIMES`` leaves it out: a runtime is never skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from dormant_catalog.migrate import migrate
from dormant_local import ExternalPostgres, LocalPostgres, MosquittoProcess

from .harness import (
    ONLY_ENV,
    RUNTIMES,
    Caller,
    RuntimeKind,
    RuntimeProcess,
    selected_runtimes,
    wait_ready,
)


@pytest.fixture(scope="package", params=selected_runtimes())
def runtime_kind(request: pytest.FixtureRequest) -> RuntimeKind:
    kind = RUNTIMES[request.param]
    reason = kind.missing()
    if reason is not None:
        pytest.fail(f"{reason}; run deploy/bootstrap.sh, or pick runtimes with {ONLY_ENV}", pytrace=False)
    return kind


@dataclass
class Stack:
    """What a runtime under test runs against."""

    broker: MosquittoProcess
    catalog_url: str
    work: Path


@pytest_asyncio.fixture(scope="package")
async def stack(
    runtime_kind: RuntimeKind,
    pg: LocalPostgres | ExternalPostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    work = tmp_path_factory.mktemp(f"conformance-{runtime_kind.name}")
    broker = MosquittoProcess(data_dir=work / "broker")
    await broker.start()
    name = f"dormant_conformance_{uuid.uuid4().hex[:12]}"
    url = await pg.create_database(name, exist_ok=False)
    try:
        await migrate(url)
        yield Stack(broker=broker, catalog_url=url, work=work)
    finally:
        await broker.stop()
        await pg.drop_database(name)


@pytest.fixture(scope="package")
def caller(stack: Stack) -> Iterator[Caller]:
    client = Caller("127.0.0.1", stack.broker.port)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="package")
def runtime(runtime_kind: RuntimeKind, stack: Stack, caller: Caller) -> Iterator[RuntimeProcess]:
    """The runtime under test, serving version 1 as live and answering."""
    process = RuntimeProcess(
        runtime_kind,
        broker_url=stack.broker.url,
        catalog_url=stack.catalog_url,
        log_file=stack.work / f"{runtime_kind.name}-runtime.log",
    )
    process.start()
    try:
        wait_ready(process, caller)
        yield process
    finally:
        process.stop()
