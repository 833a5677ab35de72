"""Helpers for rollout tests: probe-service versions that fail or lag on purpose, a controller
process, load that records which version answered, and waiting on a rollout's state."""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e.mesh import PROBE, Mesh, child_env, copy_service

from dormant import Client
from dormant.errors import DormantError
from dormant_catalog import open_catalog
from dormant_catalog.rollouts.records import RolloutRecord

SERVICE = "probe-service"


async def publish_version(
    mesh: Mesh, tmp: Path, *, fail_every: int = 0, delay_ms: int = 0, approve: bool = True
) -> int:
    """Publish a copy of probe-service whose ``work`` fails every ``fail_every``-th call / lags."""
    source = copy_service(PROBE, tmp / f"probe-{time.monotonic_ns()}")
    module = source / "probe.py"
    text = module.read_text().replace("FAIL_EVERY = 0", f"FAIL_EVERY = {fail_every}")
    text = text.replace('RELEASE = "one"', f'RELEASE = "{source.name}"')  # every copy a new version
    module.write_text(text.replace("DELAY_MS = 0", f"DELAY_MS = {delay_ms}"))
    _, version = await mesh.publish(source)
    if approve:
        async with await open_catalog(mesh.catalog_url) as catalog:
            await catalog.set_version_status(SERVICE, version, "approved", actor="test")
    return version


def start_controller(mesh: Mesh, name: str = "controller") -> subprocess.Popen[bytes]:
    log = (mesh.work_root / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "dormant_cli", "controller"],
        env=child_env(DORMANT_BROKER_URL=mesh.broker_url, DORMANT_CATALOG_URL=mesh.catalog_url),
        stdout=log,
        stderr=subprocess.STDOUT,
    )


@dataclass
class Load:
    versions: collections.Counter[int] = field(default_factory=collections.Counter)
    failed: list[str] = field(default_factory=list)
    """Failed calls by error type; SystemError from a version failing on purpose is in ``errors``."""
    errors: collections.Counter[int] = field(default_factory=collections.Counter)

    @property
    def total(self) -> int:
        return sum(self.versions.values()) + len(self.failed)


async def steady_calls(
    broker_url: str, stop: asyncio.Event, *, rate: float = 40.0, function: str = "work", clients: int = 2
) -> Load:
    """``rate`` calls a second until ``stop``; every answer is counted by the version that gave it.

    A ``SystemError`` is an answer of a version failing on purpose (counted under ``errors`` by the
    version named in its message-free payload is not available, so under version 0); any other error
    type is a failed call.
    """
    load = Load()
    pool = [Client(broker_url, timeout=10) for _ in range(clients)]
    for client in pool:
        await client.connect()

    async def one(index: int) -> None:
        try:
            answer = await pool[index % clients].call(SERVICE, function, {"text": str(index)})
            load.versions[int(answer["version"])] += 1
        except DormantError as exc:
            if exc.type == "SystemError":
                load.errors[0] += 1
            else:
                load.failed.append(exc.type)

    tasks = []
    try:
        start = time.monotonic()
        index = 0
        while not stop.is_set():
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            tasks.append(asyncio.create_task(one(index)))
            index += 1
        await asyncio.gather(*tasks)
    finally:
        for client in pool:
            await client.close()
    return load


async def wait_rollout(catalog_url: str, states: tuple[str, ...], *, timeout: float = 40.0) -> RolloutRecord:
    """The newest rollout of probe-service once its state is one of ``states``."""
    async with await open_catalog(catalog_url) as catalog:
        end = time.monotonic() + timeout
        while True:
            rollouts = await catalog.list_rollouts(SERVICE, limit=1)
            if rollouts and rollouts[0].state in states:
                return rollouts[0]
            if time.monotonic() > end:
                raise AssertionError(f"rollout not {states} after {timeout}s: {rollouts and rollouts[0]}")
            await asyncio.sleep(0.1)


async def wait_routes(broker_url: str, want: dict[int, int], *, timeout: float = 20.0) -> None:
    """Until a fresh client sees ``live`` = ``want`` in the published route table."""
    end = time.monotonic() + timeout
    while True:
        async with Client(broker_url) as client:
            await client.call(SERVICE, "echo", {"text": "routes"})
            if client.routes.weights(SERVICE) == want:
                return
        if time.monotonic() > end:
            raise AssertionError(f"routes never became {want}")
        await asyncio.sleep(0.2)


async def call_versions(
    broker_url: str, n: int, *, routing_key: str | None = None
) -> collections.Counter[int]:
    """``n`` echo calls (50 at a time); which versions answered."""
    seen: collections.Counter[int] = collections.Counter()
    async with Client(broker_url, timeout=10) as client:
        for start in range(0, n, 50):
            answers: list[Any] = await asyncio.gather(
                *(
                    client.call(SERVICE, "echo", {"text": "ab"}, routing_key=routing_key)
                    for _ in range(min(50, n - start))
                )
            )
            seen.update(int(a["version"]) for a in answers)
    return seen
