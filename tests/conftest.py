"""Shared fixtures: a private Mosquitto broker, a Postgres server with a fresh database per test, tmp dirs.

- ``broker`` (session) / ``fresh_broker`` (per test, for tests that kill or restart it): a
  ``dormant_local.MosquittoProcess`` with Dormant's config: ``.url``, ``.port``, ``start()``, ``stop()``,
  ``restart()``, ``kill()``.
- ``pg`` (session): ``$DORMANT_TEST_PG_ADMIN_URL`` as an ``ExternalPostgres`` when set, else a
  ``LocalPostgres``; ``pg_admin_url`` (session); ``catalog_url`` (per test): a new empty database, dropped
  afterwards; ``fresh_pg`` (per test): a private ``LocalPostgres`` to kill or restart.
- ``layer_store`` (per test): an empty directory for the local OCI layout.
- ``free_port()``: import it from ``dormant_local``.
No child process survives the session: fixtures stop what they start, a session-finish hook stops
stragglers, and every child gets a parent-death signal.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

ROOT = Path(__file__).resolve().parents[1]
for _root in reversed(("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")):
    if str(ROOT / _root) not in sys.path:
        sys.path.insert(0, str(ROOT / _root))

from dormant_local import (  # noqa: E402 - needs the source roots on sys.path
    ExternalPostgres,
    LocalPostgres,
    MosquittoProcess,
    free_port,
    live_children,
)

__all__ = ["free_port"]

PG_ADMIN_URL_ENV = "DORMANT_TEST_PG_ADMIN_URL"


def _private_tmp(prefix: str) -> Path:
    # Not under pytest's basetemp: that is mode 0700, and Postgres runs as an unprivileged user under root.
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="session")
def _pg_root() -> Iterator[Path]:
    root = _private_tmp("dormant-test-pg-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def pg(_pg_root: Path) -> AsyncIterator[LocalPostgres | ExternalPostgres]:
    admin_url = os.environ.get(PG_ADMIN_URL_ENV)
    if admin_url:
        yield ExternalPostgres(admin_url)
        return
    server = LocalPostgres(data_dir=_pg_root / "session")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
def pg_admin_url(pg: LocalPostgres | ExternalPostgres) -> str:
    return pg.admin_url


@pytest_asyncio.fixture
async def catalog_url(pg: LocalPostgres | ExternalPostgres) -> AsyncIterator[str]:
    name = f"dormant_test_{uuid.uuid4().hex[:16]}"
    url = await pg.create_database(name, exist_ok=False)
    try:
        yield url
    finally:
        await pg.drop_database(name)


@pytest_asyncio.fixture
async def fresh_pg(_pg_root: Path) -> AsyncIterator[LocalPostgres]:
    server = LocalPostgres(data_dir=_pg_root / f"fresh-{uuid.uuid4().hex[:8]}")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest_asyncio.fixture(scope="session")
async def broker(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MosquittoProcess]:
    process = MosquittoProcess(data_dir=tmp_path_factory.mktemp("broker"))
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@pytest_asyncio.fixture
async def fresh_broker(tmp_path: Path) -> AsyncIterator[MosquittoProcess]:
    process = MosquittoProcess(data_dir=tmp_path / "broker")
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@pytest.fixture
def layer_store(tmp_path: Path) -> Path:
    store = tmp_path / "layers"
    store.mkdir()
    return store


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    for child in live_children():
        child.stop_blocking()
