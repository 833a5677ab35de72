"""Harness for delivery fault tests: a mesh serving ledger-service, counters of runs and effects, load."""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from e2e.mesh import ROOT, Mesh

from dormant import Client
from dormant.errors import DormantError

LEDGER = ROOT / "tests" / "fixtures" / "services" / "ledger-service"
CALL_LEASE_S = "1"


@dataclass
class Ledger:
    """A mesh serving ledger-service, and where its runs and effects are counted."""

    mesh: Mesh
    runs_file: Path
    version: int = 0

    async def setup(self, *, replicas: int, source: Path = LEDGER) -> None:
        self.runs_file.touch()
        os.chmod(self.runs_file, 0o666)
        _, self.version = await self.mesh.publish(source)
        await self.mesh.deploy("ledger-service", self.version, replicas=replicas)

    def start_pod(self, pod_id: str, *, lease_s: float = 1.0) -> None:
        self.mesh.start_pod(
            pod_id,
            lease_s,
            extra_args=("--crash-backoff-reset", "0.1"),
            extra_env={"LEDGER_RUNS_FILE": str(self.runs_file), "DORMANT_CALL_LEASE_S": CALL_LEASE_S},
        )

    async def sessions_in_transaction(self) -> int:
        """Database sessions of this catalog sitting inside an open transaction (handlers holding one)."""
        async with await psycopg.AsyncConnection.connect(self.mesh.catalog_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND state = 'idle in transaction'"
            )
            row = await cur.fetchone()
            return int(row[0]) if row else 0

    def runs(self) -> collections.Counter[str]:
        return collections.Counter(self.runs_file.read_text().split())

    async def effects(self) -> collections.Counter[str]:
        async with await psycopg.AsyncConnection.connect(self.mesh.catalog_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT body->>'callId' FROM dormant_data.documents"
                " WHERE service = 'ledger-service' AND collection = 'effects'"
            )
            return collections.Counter(row[0] for row in await cur.fetchall())


@dataclass
class LoadResult:
    ok: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    """callId -> the typed error's type (every failure must be a typed error)."""

    @property
    def total(self) -> int:
        return len(self.ok) + len(self.failed)

    def summary(self) -> str:
        kinds = collections.Counter(self.failed.values())
        return f"{len(self.ok)} ok, {len(self.failed)} failed {dict(kinds)}"


async def steady_load(
    broker_url: str,
    *,
    rate: float,
    duration: float,
    prefix: str,
    timeout: float = 30.0,
    clients: int = 4,
    ms: int = 0,
) -> LoadResult:
    """``rate`` calls a second for ``duration`` seconds, each with its own callId; waits for every answer."""
    result = LoadResult()
    pool = [Client(broker_url, timeout=timeout) for _ in range(clients)]
    for client in pool:
        await client.connect()
    try:

        async def one(index: int) -> None:
            call_id = f"{prefix}-{index}"
            try:
                result.ok[call_id] = await pool[index % clients].call(
                    "ledger-service", "record", {"item": call_id, "ms": ms}, call_id=call_id
                )
            except DormantError as exc:
                result.failed[call_id] = exc.type

        tasks = []
        start = time.monotonic()
        for index in range(round(rate * duration)):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
    finally:
        for client in pool:
            await client.close()
    return result


def doubled(counter: collections.Counter[str], ids: Iterable[str]) -> dict[str, int]:
    return {call_id: counter[call_id] for call_id in ids if counter[call_id] > 1}


def children_of(pid: int) -> list[int]:
    """Direct child processes of ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found
