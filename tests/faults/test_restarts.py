"""The broker, the database and the service itself restart under load: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import collections
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from e2e.mesh import running_mesh

from dormant_local import LocalPostgres, MosquittoProcess

from .ledger import LEDGER, Ledger, LoadResult, doubled, steady_load


async def _load_with_a_restart(
    ledger: Ledger,
    restart: Callable[[], Awaitable[None]],
    *,
    after: float,
    rate: int,
    duration: int,
    timeout: float,
) -> tuple[LoadResult, collections.Counter[str]]:
    """Two pods serve ledger-service; ``restart`` runs ``after`` seconds into a steady load."""
    await ledger.setup(replicas=2)
    ledger.start_pod("pod-1")
    ledger.start_pod("pod-2")
    await ledger.mesh.wait_serving("ledger-service")

    async def bounce() -> None:
        await asyncio.sleep(after)
        await restart()

    bouncing = asyncio.create_task(bounce())
    prefix = uuid.uuid4().hex[:6]
    result = await steady_load(
        ledger.mesh.broker_url, rate=rate, duration=duration, prefix=prefix, timeout=timeout
    )
    await bouncing
    return result, await ledger.effects()


async def test_broker_restart_under_load(
    fresh_broker: MosquittoProcess, catalog_url: str, tmp_path: Path
) -> None:
    with running_mesh(fresh_broker.url, catalog_url, tmp_path) as mesh:
        ledger = Ledger(mesh, tmp_path / "runs.txt")
        result, effects = await _load_with_a_restart(
            ledger, fresh_broker.restart, after=10, rate=200, duration=30, timeout=60
        )
        print(f"\nbroker restart: {result.summary()}, effects {sum(effects[i] for i in result.ok)}")
        assert result.total == 6000
        # Calls made while the broker is down wait for it; a call whose runtimes had not resubscribed
        # within the client's grace (RESUBSCRIBE_GRACE_S) after its reconnect is told `Unavailable`, a
        # typed error the caller can retry, never a lost or doubled effect. On a quiet machine none are;
        # on a busy one (one core spinning) runtimes have resubscribed late for up to 6 % of the calls
        # (to be brought back to none: the session-7 note).
        assert set(result.failed.values()) <= {"Unavailable"}
        assert len(result.failed) <= result.total // 10
        assert doubled(effects, [*result.ok, *result.failed]) == {}
        assert all(effects[i] == 1 for i in result.ok)


async def test_postgres_restart_under_load(
    broker: MosquittoProcess, fresh_pg: LocalPostgres, tmp_path: Path
) -> None:
    catalog_url = await fresh_pg.create_database(f"dormant_{uuid.uuid4().hex[:8]}")
    with running_mesh(broker.url, catalog_url, tmp_path) as mesh:
        ledger = Ledger(mesh, tmp_path / "runs.txt")
        result, effects = await _load_with_a_restart(
            ledger, fresh_pg.restart, after=3, rate=100, duration=10, timeout=20
        )
        print(f"\npostgres restart: {result.summary()}, effects {sum(effects.values())}")
        assert result.total == 1000
        assert set(result.failed.values()) <= {"Unavailable", "TimeoutError"}  # clear, typed errors only
        assert doubled(effects, [*result.ok, *result.failed]) == {}
        assert all(effects[i] == 1 for i in result.ok)
        assert len(result.ok) > 0


async def test_redeploy_under_load_fails_no_call(ledger: Ledger, tmp_path: Path) -> None:
    await ledger.setup(replicas=2)
    ledger.start_pod("pod-1")
    ledger.start_pod("pod-2")
    await ledger.mesh.wait_serving("ledger-service")
    v2_dir = tmp_path / "ledger-v2"
    shutil.copytree(LEDGER, v2_dir, ignore=shutil.ignore_patterns("generated", "__pycache__"))
    (v2_dir / "VERSION").write_text("2\n")
    _, v2 = await ledger.mesh.publish(v2_dir)
    assert v2 == ledger.version + 1

    async def redeploy() -> None:
        await asyncio.sleep(3)
        await ledger.mesh.deploy("ledger-service", v2, replicas=2)

    switch = asyncio.create_task(redeploy())
    result = await steady_load(ledger.mesh.broker_url, rate=200, duration=8, prefix="redeploy", timeout=30)
    await switch
    await ledger.mesh.wait_serving("ledger-service", version=v2)
    effects = await ledger.effects()
    print(f"\nredeploy: {result.summary()}")
    assert result.total == 1600
    assert result.failed == {}
    assert doubled(effects, result.ok) == {}
