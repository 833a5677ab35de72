"""The catalog at scale, simulated: many deployments' replica slots claimed, leased and renewed by a
pool of simulated pods against one Postgres (issue 14, item 6).

    .venv/bin/python bench/catalog_scale.py --deployments 1000 --pods 500   # 500 of 2,000 slots held
    .venv/bin/python bench/catalog_scale.py --deployments 200                # every slot held, 2 spare pods

Each pod keeps about 3 connections (and opens a 4th for a moment at start): ``--pods 2000`` needs some
6,000 Postgres backends (about 15 GB) and more CPU than the simulator's one event loop has.

A simulated pod is what a sidecar does with the catalog, and nothing else (no runtime, no broker):
it opens the catalog as ``Pod._connect`` does (migrations checked, a pool of at most 3 connections,
retrying with back-off), registers, keeps a ``SlotWaker`` (its own ``LISTEN dormant_slots``
connection), claims a slot with ``claim_slot`` (woken by NOTIFY, polling every ``poll_interval_s``),
renews it with the sidecar's own ``LeaseKeeper`` (every ``lease_s / 3``, at once on a NOTIFY about its
service), reports it serving, pings the catalog for its health every ``REPORT_S`` as ``PodObserver``
does, and gives its slot back on stop. As in the sidecar, a pod holds one slot at a time: a pool
needs one pod per replica slot, plus spares (``pods wanted`` in docs/production.md); with fewer pods
than slots the rest stay unassigned, and the run says so.

The phases, on a private Postgres started for the run (``max_connections`` sized for the pool, with
``pg_stat_statements``):

1. set-up: ``--deployments`` services with one version each, deployed with ``--replicas`` slots
   (each deploy its own transaction, nobody listening yet), plus a second version for the redeploys;
2. fill: every pod starts at once against the deployed catalog: time until all pods listen, until
   every slot a pod can hold is held and reported serving; claims/s; claim attempts and latency;
3. steady state (``--steady-s``): queries/s per pod and in total, by kind, client- and server-side
   (``pg_stat_statements``), transactions/s, Postgres CPU, connections (pooled and LISTEN), memory
   per backend, HOT updates of the leased rows, any lease lost;
4. NOTIFY fan-out (``--probes``): a NOTIFY on ``dormant_slots`` from another connection; how many pods
   see it and how long until the last one does (all pods share this one process and its event loop,
   so the time is an upper bound of what separate pods would see);
5. redeploys (``--redeploys``): one service at a time moved to its second version; the deploy's
   latency with every pod listening, and the time until both of its holders' lease keepers have the
   new target;
6. stop: every pod releases its slot; the catalog must hold no slot afterwards.

Prints a summary on stderr and the figures as JSON on stdout (``--json-out`` also writes them to a
file). ``simulate(catalog_url, config)`` runs phases 1-6 on a database someone else provides (the
integration test does, with a small pool); ``run(config)`` starts the private Postgres first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

ROOT = Path(__file__).resolve().parents[1]
for _root in reversed(("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")):
    if str(ROOT / _root) not in sys.path:
        sys.path.insert(0, str(ROOT / _root))

import psycopg  # noqa: E402

from dormant_catalog import (  # noqa: E402
    Catalog,
    CatalogUnavailable,
    Database,
    SlotClaim,
    migrate,
    observed,
)
from dormant_catalog.channels import SLOTS_CHANNEL  # noqa: E402
from dormant_catalog.db import Conn  # noqa: E402
from dormant_catalog.rollouts import actions as rollout_actions  # noqa: E402
from dormant_local import LocalPostgres  # noqa: E402
from dormant_sidecar.lease import LeaseKeeper  # noqa: E402
from dormant_sidecar.observe import REPORT_S  # noqa: E402
from dormant_sidecar.tasks import stop_task  # noqa: E402
from dormant_sidecar.wake import SlotWaker  # noqa: E402

P = ParamSpec("P")
T = TypeVar("T")

BASE_IMAGE = "dormant-python:1"
PLATFORM_INTERFACE = "dormant/1"
PROBE_APP = "zz-fanout-probe"
"""The payload of the fan-out probes: a service nobody deploys (pods watch it only to time the NOTIFY)."""


@dataclass(frozen=True)
class ScaleConfig:
    deployments: int = 1000
    replicas: int = 2
    pods: int | None = None
    """Simulated pods; None: one per replica slot plus ``spare``."""
    spare: int = 2
    lease_s: float = 10.0
    """The sidecar's default lease (``dormant pod --lease``)."""
    poll_interval_s: float = 2.0
    """The sidecar's default claim poll while idle."""
    health: bool = True
    """Ping the catalog every ``REPORT_S`` as a running pod's ``PodObserver`` does."""
    steady_s: float = 30.0
    probes: int = 5
    redeploys: int = 10
    fill_timeout_s: float = 600.0

    @property
    def slots(self) -> int:
        return self.deployments * self.replicas

    @property
    def pod_count(self) -> int:
        return self.pods if self.pods is not None else self.slots + self.spare


# --------------------------------------------------------------------------- client-side counting


class Tally:
    """Catalog calls by phase and query name, with their latencies (the caller's view, seconds)."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.calls: dict[str, Counter[str]] = defaultdict(Counter)
        self.latency: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def record(self, name: str, seconds: float) -> None:
        self.calls[self.phase][name] += 1
        self.latency[self.phase][name].append(seconds)


class CountingDatabase(Database):
    """The sidecar's ``Database`` (same pool, same transactions), counting each ``run`` by query name."""

    def __init__(self, url: str, tally: Tally, *, min_size: int, max_size: int, timeout: float) -> None:
        super().__init__(url, min_size=min_size, max_size=max_size, timeout=timeout)
        self.tally = tally

    async def run(
        self, query: Callable[Concatenate[Conn, P], Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        started = time.perf_counter()
        try:
            return await super().run(query, *args, **kwargs)
        finally:
            self.tally.record(query.__name__, time.perf_counter() - started)


# --------------------------------------------------------------------------- one simulated pod


@dataclass
class PodFigures:
    opened_s: float | None = None
    """Seconds from the pod's start until its catalog was open (migrations checked, pool open)."""
    connect_failures: int = 0
    listening_at: float | None = None
    claimed_at: float | None = None
    claim_attempts: int = 0
    empty_claims: int = 0
    slots_claimed: int = 0
    leases_lost: int = 0
    probe_seen: list[float] = field(default_factory=list)
    switched_at: float | None = None


class SimPod:
    """A sidecar's catalog behaviour (see the module docstring), driven by ``stop``."""

    def __init__(self, pod_id: str, catalog_url: str, config: ScaleConfig, tally: Tally) -> None:
        self.pod_id = pod_id
        self.catalog_url = catalog_url
        self.config = config
        self.tally = tally
        self.figures = PodFigures()
        self.claim: SlotClaim | None = None
        self.lease: LeaseKeeper | None = None
        self.switched = asyncio.Event()
        self.stopping = asyncio.Event()
        self.done = asyncio.Event()

    async def _pause(self, seconds: float, *also: asyncio.Event) -> None:
        waiters = [asyncio.create_task(e.wait()) for e in (self.stopping, *also)]
        try:
            await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _connect(self) -> Catalog | None:
        """``Pod._connect``: open_catalog(url, max_size=3, connect_timeout_s=...), retried with back-off."""
        started = time.perf_counter()
        timeout = max(2.0, min(10.0, self.config.lease_s))
        delay = 0.5
        while not self.stopping.is_set():
            db: CountingDatabase | None = None
            try:
                await migrate(self.catalog_url, connect_timeout=timeout)
                db = CountingDatabase(self.catalog_url, self.tally, min_size=1, max_size=3, timeout=timeout)
                await db.open()
                catalog = Catalog(db)
                await catalog.register_pod(self.pod_id, (BASE_IMAGE,), (PLATFORM_INTERFACE,))
            except CatalogUnavailable:
                self.figures.connect_failures += 1
                if db is not None:
                    await db.close()
            else:
                self.figures.opened_s = time.perf_counter() - started
                return catalog
            await self._pause(delay)
            delay = min(delay * 2, 10.0)
        return None

    async def run(self) -> None:
        try:
            catalog = await self._connect()
            if catalog is None:
                return
            try:
                await self._serve(catalog)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(catalog.deregister_pod(self.pod_id), 5)
                await catalog.close()
        finally:
            self.done.set()

    async def _serve(self, catalog: Catalog) -> None:
        waker = SlotWaker(catalog)
        waker.start()
        probe = waker.watch(PROBE_APP)
        tasks = [
            asyncio.create_task(self._watch_probes(probe), name=f"{self.pod_id}-probes"),
            asyncio.create_task(self._note_listening(waker), name=f"{self.pod_id}-listening"),
        ]
        if self.config.health:
            tasks.append(asyncio.create_task(self._health(catalog), name=f"{self.pod_id}-health"))
        try:
            # As Pod._serve_slots: claim at once, without waiting for LISTEN to be in effect.
            while not self.stopping.is_set():
                claim = await self._next_claim(catalog, waker)
                if claim is None:
                    break
                await self._hold(catalog, waker, claim)
        finally:
            for task in tasks:
                await stop_task(task)  # as the sidecar's own loops are stopped (see its tasks.py)
            await waker.stop()

    async def _next_claim(self, catalog: Catalog, waker: SlotWaker) -> SlotClaim | None:
        """``Pod._next_claim``: claim, or wait for a NOTIFY or the poll interval, until stopped."""
        while not self.stopping.is_set():
            waker.event.clear()
            self.figures.claim_attempts += 1
            try:
                claim = await catalog.claim_slot(
                    self.pod_id,
                    base_images=(BASE_IMAGE,),
                    platform_interfaces=(PLATFORM_INTERFACE,),
                    lease_s=self.config.lease_s,
                )
            except CatalogUnavailable:
                claim = None
            if claim is not None:
                return claim
            self.figures.empty_claims += 1
            await self._pause(self.config.poll_interval_s, waker.event)
        return None

    async def _hold(self, catalog: Catalog, waker: SlotWaker, claim: SlotClaim) -> None:
        """``Pod._serve`` and ``_follow`` without a runtime: loading a version takes no time."""
        self.claim = claim
        self.figures.claimed_at = time.perf_counter()
        self.figures.slots_claimed += 1
        watch = waker.watch(claim.app_name)
        lease = self.lease = LeaseKeeper(catalog, self.pod_id, claim, lease_s=self.config.lease_s, wake=watch)
        lease.start()
        lease.serving(claim.generation)
        current = claim
        try:
            while True:
                lease.changed.clear()
                if self.stopping.is_set():
                    await lease.stop()
                    with contextlib.suppress(Exception):  # as Pod._release: the lease would expire
                        await asyncio.wait_for(catalog.release_slot(self.pod_id, current.slot_id), 10)
                    return
                if lease.lost:
                    self.figures.leases_lost += 1
                    return
                if lease.claim.target != current.target:
                    current = lease.claim
                    lease.serving(current.generation)  # "loaded" the new target at once
                    self.figures.switched_at = time.perf_counter()
                    self.switched.set()
                    continue
                await self._pause(3600.0, lease.changed)
        finally:
            await lease.stop()
            waker.unwatch(claim.app_name, watch)
            self.claim = self.lease = None

    async def _note_listening(self, waker: SlotWaker) -> None:
        await waker.listening.wait()
        self.figures.listening_at = time.perf_counter()

    async def _watch_probes(self, probe: asyncio.Event) -> None:
        while True:
            await probe.wait()
            probe.clear()
            self.figures.probe_seen.append(time.perf_counter())

    async def _health(self, catalog: Catalog) -> None:
        """``PodObserver._report``: every REPORT_S a ping, and the health summary when it changed."""
        reported: object = None
        while True:
            await asyncio.sleep(REPORT_S)
            with contextlib.suppress(Exception):
                await catalog.db.run(observed.ping)
                summary = {
                    "ready": True,
                    "failing": {},
                    "runtimes": {"serving" if self.claim else "standby": 1},
                }
                if summary != reported:
                    await catalog.db.run(observed.report_pod_health, self.pod_id, summary)
                    reported = summary


# --------------------------------------------------------------------------- server-side observation


class Monitor:
    """Samples the database's connections (and the NOTIFY queue) every ``every_s`` on its own connection."""

    def __init__(self, url: str, database: str, every_s: float = 0.5) -> None:
        self.url = url
        self.database = database
        self.every_s = every_s
        self.phase = "setup"
        self.peak: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.queue_peak = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        self._task = asyncio.create_task(self._run(), name="monitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._conn.close()

    async def sample(self) -> dict[str, int]:
        cur = await self._conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE query ILIKE 'LISTEN%%'),"
            " count(*) FILTER (WHERE state = 'active'), pg_notification_queue_usage()"
            " FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (self.database,),
        )
        row = await cur.fetchone()
        assert row is not None
        self.queue_peak = max(self.queue_peak, float(row[3]))
        return {"connections": int(row[0]), "listen": int(row[1]), "active": int(row[2])}

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(psycopg.Error):
                found = await self.sample()
                peak = self.peak[self.phase]
                for key, value in found.items():
                    peak[key] = max(peak[key], value)
            await asyncio.sleep(self.every_s)


class LoopLag:
    """How late a 50 ms sleep wakes up, by phase: the simulator's own event loop being the bottleneck
    (every simulated pod shares it) shows here, not in the database's figures."""

    def __init__(self, monitor: Monitor, every_s: float = 0.05) -> None:
        self.monitor = monitor
        self.every_s = every_s
        self.late: dict[str, list[float]] = defaultdict(list)
        self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def _run(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(self.every_s)
            self.late[self.monitor.phase].append(time.perf_counter() - t - self.every_s)

    async def close(self) -> None:
        await stop_task(self._task)

    def figures(self) -> dict[str, dict[str, float] | None]:
        return {phase: _ms(values) for phase, values in self.late.items()}


def postgres_processes(server_pid: int | None) -> list[int]:
    """The server's pid and its backends' (Linux ``/proc``); empty when the server is not ours."""
    if server_pid is None or not Path(f"/proc/{server_pid}").exists():
        return []
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == server_pid:  # field 4, the parent pid
                children.append(int(stat.parent.name))
    return [server_pid, *children]


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of ``pids`` (fields 14 and 15 of ``/proc/<pid>/stat``)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def backend_memory_mb(pids: Sequence[int], sample: int = 40) -> dict[str, float] | None:
    """Private memory (Private_Clean + Private_Dirty of ``smaps_rollup``) of a sample of backends."""
    backends = pids[1:]
    step = max(1, len(backends) // sample)
    private = []
    for pid in backends[::step][:sample]:
        with contextlib.suppress(OSError, ValueError):
            kb = 0
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    kb += int(line.split()[1])
            private.append(kb / 1024)
    if not private:
        return None
    return {
        "backends_sampled": len(private),
        "backend_private_mb_mean": round(statistics.fmean(private), 2),
        "backend_private_mb_max": round(max(private), 2),
    }


async def _has_statements(conn: Conn) -> bool:
    """``pg_stat_statements`` is loaded (as on the run's own server): reset it."""
    cur = await conn.execute("SELECT current_setting('shared_preload_libraries')")
    row = await cur.fetchone()
    if row is None or "pg_stat_statements" not in str(row[0]):
        return False
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await conn.execute("SELECT pg_stat_statements_reset()")
    except psycopg.Error:
        return False
    return True


async def _statements(conn: Conn, seconds: float, top: int = 12) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT calls, total_exec_time, mean_exec_time, rows,"
        " left(regexp_replace(query, '\\s+', ' ', 'g'), 90) FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND query NOT ILIKE '%%pg_stat%%' ORDER BY calls DESC LIMIT %s",
        (top,),
    )
    return [
        {
            "per_s": round(int(r[0]) / seconds, 1),
            "calls": int(r[0]),
            "mean_ms": round(float(r[2]), 3),
            "total_ms_per_s": round(float(r[1]) / seconds, 2),
            "query": str(r[4]),
        }
        for r in await cur.fetchall()
    ]


async def _db_counters(conn: Conn) -> dict[str, float]:
    cur = await conn.execute(
        "SELECT xact_commit + xact_rollback, tup_updated, tup_inserted, tup_deleted"
        " FROM pg_stat_database WHERE datname = current_database()"
    )
    row = await cur.fetchone()
    assert row is not None
    cur = await conn.execute(
        "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
        " WHERE relname IN ('replica_slots', 'pods')"
    )
    out = {
        "xacts": float(row[0]),
        "updated": float(row[1]),
        "inserted": float(row[2]),
        "deleted": float(row[3]),
    }
    for name, upd, hot in await cur.fetchall():
        out[f"{name}_upd"] = float(upd)
        out[f"{name}_hot"] = float(hot)
    return out


async def _sizes(conn: Conn) -> dict[str, Any]:
    """Heap and index bytes of the leased tables, their dead rows, and each index's scans so far."""
    cur = await conn.execute(
        "SELECT relname, pg_relation_size(relid), pg_indexes_size(relid), n_dead_tup"
        " FROM pg_stat_user_tables WHERE relname IN ('replica_slots', 'pods')"
    )
    out: dict[str, Any] = {
        str(r[0]): {"heap_kb": int(r[1]) // 1024, "indexes_kb": int(r[2]) // 1024, "dead_rows": int(r[3])}
        for r in await cur.fetchall()
    }
    cur = await conn.execute(
        "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes WHERE relname = 'replica_slots'"
    )
    out["replica_slots_index_scans"] = {str(r[0]): int(r[1]) for r in await cur.fetchall()}
    return out


async def _fresh_stats(conn: Conn) -> None:
    """Statistics are sent by backends at most once a second: ask for a snapshot that includes them."""
    with contextlib.suppress(psycopg.Error):
        await conn.execute("SELECT pg_stat_clear_snapshot()")
    await asyncio.sleep(1.1)


# --------------------------------------------------------------------------- the run


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ms(values: Sequence[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "n": len(values),
        "p50_ms": round(_pct(values, 0.5) * 1000, 2),
        "p99_ms": round(_pct(values, 0.99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
    }


def app_name(i: int) -> str:
    return f"svc-{i:05d}"


async def _setup(catalog: Catalog, config: ScaleConfig) -> dict[str, Any]:
    """Register and deploy every service (one transaction per deploy, as ``dormant deploy`` does)."""
    started = time.perf_counter()
    for i in range(config.deployments):
        for version in (1, 2) if i < config.redeploys else (1,):
            await catalog.register_version(
                app_name=app_name(i),
                app_layer_image=f"apps/{app_name(i)}@sha256:{i * 10 + version:064x}",
                base_image=BASE_IMAGE,
                interface_hash=f"sha256:{version:064x}",
                schema_definition={"functions": {"ping": {}}},
                topic_mappings={"ping": f"service/{app_name(i)}/ping"},
            )
    registered = time.perf_counter()
    latencies = []
    for i in range(config.deployments):
        t = time.perf_counter()
        await catalog.db.run(rollout_actions.deploy, app_name(i), version=1, replicas=config.replicas)
        latencies.append(time.perf_counter() - t)
    # A live catalog's statistics are kept current by autovacuum; this one was filled a moment ago.
    await catalog.db.run(_analyze)
    return {
        "register_s": round(registered - started, 2),
        "deploy_s": round(time.perf_counter() - registered, 2),
        "deploy_latency_no_listeners": _ms(latencies),
    }


async def _analyze(conn: Conn) -> None:
    await conn.execute("ANALYZE")


async def _wait(
    condition: Callable[[], Awaitable[bool] | bool], deadline_s: float, every_s: float = 0.05
) -> bool:
    end = time.perf_counter() + deadline_s
    while time.perf_counter() < end:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return True
        await asyncio.sleep(every_s)
    return False


async def _held(conn: Conn) -> dict[str, int]:
    cur = await conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE pod_id IS NOT NULL AND lease_expires_at > now()),"
        " count(*) FILTER (WHERE serving_generation = generation AND lease_expires_at > now()),"
        " count(DISTINCT pod_id) FROM replica_slots"
    )
    row = await cur.fetchone()
    assert row is not None
    return {"slots": int(row[0]), "held": int(row[1]), "serving": int(row[2]), "pods_holding": int(row[3])}


async def _ownership(conn: Conn, pods: Sequence[SimPod]) -> dict[str, Any]:
    """Who holds what, by the catalog and by the pods: no slot twice, no pod two, both views agree."""
    cur = await conn.execute("SELECT slot_id, pod_id FROM replica_slots WHERE pod_id IS NOT NULL")
    rows = [(int(r[0]), str(r[1])) for r in await cur.fetchall()]
    by_pod = Counter(pod for _, pod in rows)
    by_slot = Counter(slot for slot, _ in rows)
    pods_view = {p.pod_id: p.claim.slot_id for p in pods if p.claim is not None}
    pod_slots = Counter(pods_view.values())
    return {
        "held": len(rows),
        "pods_holding_two_or_more": sum(1 for n in by_pod.values() if n > 1),
        "slots_held_twice": sum(1 for n in by_slot.values() if n > 1),
        "slots_claimed_by_two_pods": sum(1 for n in pod_slots.values() if n > 1),
        "views_agree": dict(rows) == {v: k for k, v in pods_view.items()} and len(pods_view) == len(rows),
    }


async def simulate(
    catalog_url: str, config: ScaleConfig, *, server_pid: int | None = None, quiet: bool = False
) -> dict[str, Any]:
    """Phases 1-6 (module docstring) on the (empty) database at ``catalog_url``; the figures."""

    def say(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    tally = Tally()
    result: dict[str, Any] = {"config": {**asdict(config), "slots": config.slots, "pods": config.pod_count}}
    await migrate(catalog_url)
    admin_db = Database(catalog_url, min_size=1, max_size=2, timeout=30.0)
    await admin_db.open()
    admin = Catalog(admin_db)
    database = str(psycopg.conninfo.conninfo_to_dict(catalog_url).get("dbname"))
    monitor = Monitor(catalog_url, database)
    await monitor.start()
    lag = LoopLag(monitor)
    pods: list[SimPod] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
            statements = await _has_statements(conn)
            say(f"setup: {config.deployments} deployments x {config.replicas} replicas ...")
            result["setup"] = await _setup(admin, config)
            say(f"  {result['setup']}")

            # ---- fill
            tally.phase = monitor.phase = "fill"
            if statements:
                await conn.execute("SELECT pg_stat_statements_reset()")
            say(f"fill: {config.pod_count} pods start at once ...")
            pods = [SimPod(f"sim-{i:05d}", catalog_url, config, tally) for i in range(config.pod_count)]
            started = time.perf_counter()
            cpu_before = cpu_seconds(postgres_processes(server_pid))
            tasks = [asyncio.create_task(p.run(), name=p.pod_id) for p in pods]
            can_hold = min(config.pod_count, config.slots)
            listening = await _wait(
                lambda: all(p.figures.listening_at is not None for p in pods), config.fill_timeout_s, 0.2
            )
            all_listening = time.perf_counter()
            held = await _wait(
                lambda: sum(1 for p in pods if p.claim is not None) >= can_hold, config.fill_timeout_s, 0.05
            )
            all_held = time.perf_counter()

            async def all_serving() -> bool:
                return (await _held(conn))["serving"] >= can_hold

            serving = await _wait(all_serving, config.fill_timeout_s, 0.1)
            all_served = time.perf_counter()
            claimed = sorted(p.figures.claimed_at for p in pods if p.figures.claimed_at is not None)
            fill_claims = tally.latency["fill"]["claim_slot"]
            opened = [p.figures.opened_s for p in pods if p.figures.opened_s is not None]
            window = (claimed[-1] - claimed[0]) if len(claimed) > 1 else 0.0
            result["fill"] = {
                "all_listening_s": round(all_listening - started, 2) if listening else None,
                "all_held_s": round(all_held - started, 2) if held else None,
                "all_serving_s": round(all_served - started, 2) if serving else None,
                "slots_held": len(claimed),
                "slots_unassigned": config.slots - len(claimed),
                "first_claim_s": round(claimed[0] - started, 2) if claimed else None,
                "claims_per_s": round((len(claimed) - 1) / window, 1) if window > 0 else None,
                "claims_per_s_from_start": round(len(claimed) / (all_held - started), 1) if held else None,
                "claim_attempts": sum(p.figures.claim_attempts for p in pods),
                "empty_claims": sum(p.figures.empty_claims for p in pods),
                "claim_latency": _ms(fill_claims),
                "open_catalog": _ms(opened),
                "connect_failures": sum(p.figures.connect_failures for p in pods),
                "postgres_cpu_s": round(cpu_seconds(postgres_processes(server_pid)) - cpu_before, 2),
            }
            say(f"  {result['fill']}")
            if statements:
                result["fill"]["statements"] = await _statements(conn, all_served - started, top=14)
            result["ownership_after_fill"] = await _ownership(conn, pods)
            say(f"  ownership: {result['ownership_after_fill']}")

            # ---- steady state
            tally.phase = monitor.phase = "steady"
            say(f"steady state for {config.steady_s:g} s ...")
            await asyncio.sleep(min(config.lease_s, 5.0))  # let the fill's stragglers settle
            if statements:
                await conn.execute("SELECT pg_stat_statements_reset()")
            await _fresh_stats(conn)
            before = await _db_counters(conn)
            sizes_before = await _sizes(conn)
            procs = postgres_processes(server_pid)
            pg_cpu0, my_cpu0 = cpu_seconds(procs), _own_cpu()
            tally.calls["steady"].clear()
            tally.latency["steady"].clear()
            t0 = time.perf_counter()
            await asyncio.sleep(config.steady_s)
            elapsed = time.perf_counter() - t0
            pg_cpu, my_cpu = cpu_seconds(procs) - pg_cpu0, _own_cpu() - my_cpu0
            steady_calls = dict(tally.calls["steady"])
            await _fresh_stats(conn)
            after = await _db_counters(conn)
            holding = sum(1 for p in pods if p.claim is not None)
            counts = {name: round(n / elapsed, 2) for name, n in sorted(steady_calls.items())}
            total = sum(steady_calls.values()) / elapsed
            result["steady"] = {
                "seconds": round(elapsed, 1),
                "pods_holding": holding,
                "catalog_calls_per_s": counts,
                "catalog_calls_per_s_total": round(total, 1),
                "catalog_calls_per_s_per_pod": round(total / config.pod_count, 3),
                "renewals_per_s_per_holding_pod": round(
                    steady_calls.get("renew_lease", 0) / elapsed / max(1, holding), 3
                ),
                "renewal_latency": _ms(tally.latency["steady"]["renew_lease"]),
                "ping_latency": _ms(tally.latency["steady"]["ping"]),
                "transactions_per_s": round((after["xacts"] - before["xacts"]) / elapsed, 1),
                "rows_updated_per_s": round((after["updated"] - before["updated"]) / elapsed, 1),
                "replica_slots_hot_update_share": _share(after, before, "replica_slots"),
                "pods_hot_update_share": _share(after, before, "pods"),
                "postgres_cpu_percent_of_one_core": round(100 * pg_cpu / elapsed, 1) if procs else None,
                "simulator_cpu_percent_of_one_core": round(100 * my_cpu / elapsed, 1),
                "statements": await _statements(conn, elapsed) if statements else None,
                "connections": await monitor.sample(),
                "memory": backend_memory_mb(procs),
                "leases_lost": sum(p.figures.leases_lost for p in pods),
                "event_loop_lag": _ms(lag.late["steady"]),
                "tables_before": sizes_before,
                "tables_after": await _sizes(conn),
            }
            if statements:
                cur = await conn.execute(
                    "SELECT sum(calls) FROM pg_stat_statements"
                    " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
                row = await cur.fetchone()
                result["steady"]["statements_per_s_total"] = (
                    round(float(row[0] or 0) / elapsed, 1) if row else None
                )
            say(f"  {json.dumps({k: v for k, v in result['steady'].items() if k != 'statements'})}")
            result["claim_plan"] = await _claim_plan(conn)

            # ---- NOTIFY fan-out
            tally.phase = monitor.phase = "fanout"
            say(f"fan-out: {config.probes} probes to {config.pod_count} listeners ...")
            probes: list[dict[str, Any]] = []
            for _ in range(config.probes):
                # A waker that (re)connects sets every watcher once: count only what comes after.
                baseline = [len(p.figures.probe_seen) for p in pods]
                t = time.perf_counter()
                await conn.execute("SELECT pg_notify(%s, %s)", (SLOTS_CHANNEL, PROBE_APP))
                committed = time.perf_counter()
                await _wait(_all_saw_probe(pods, baseline), 60.0, 0.01)
                seen = [
                    p.figures.probe_seen[n] - t
                    for p, n in zip(pods, baseline, strict=True)
                    if len(p.figures.probe_seen) > n
                ]
                probes.append(
                    {
                        "notify_commit_ms": round((committed - t) * 1000, 2),
                        "delivered": len(seen),
                        "p50_ms": round(_pct(seen, 0.5) * 1000, 1) if seen else None,
                        "last_ms": round(max(seen) * 1000, 1) if seen else None,
                    }
                )
                await asyncio.sleep(1.0)
            result["fanout"] = {
                "listeners": config.pod_count,
                "probes": probes,
                "delivered_per_notify": min(p["delivered"] for p in probes) if probes else None,
                "last_listener_ms_median": statistics.median(p["last_ms"] for p in probes if p["last_ms"])
                if probes
                else None,
                "notification_queue_peak": monitor.queue_peak,
            }
            say(f"  {result['fanout']}")

            # ---- redeploys
            tally.phase = monitor.phase = "redeploy"
            say(f"redeploys: {config.redeploys} services, one at a time ...")
            redeploys: list[dict[str, Any]] = []
            for i in range(min(config.redeploys, config.deployments)):
                holders = [p for p in pods if p.claim is not None and p.claim.app_name == app_name(i)]
                for p in holders:
                    p.switched.clear()
                t = time.perf_counter()
                await admin.db.run(rollout_actions.deploy, app_name(i), version=2, replicas=config.replicas)
                committed = time.perf_counter()
                ok = await _wait(_all_switched(holders), 30.0, 0.005)
                seen = [
                    p.figures.switched_at - t
                    for p in holders
                    if p.switched.is_set() and p.figures.switched_at
                ]
                redeploys.append(
                    {
                        "deploy_ms": round((committed - t) * 1000, 1),
                        "holders": len(holders),
                        "switched": len(seen) if ok else sum(1 for p in holders if p.switched.is_set()),
                        "last_holder_ms": round(max(seen) * 1000, 1) if seen else None,
                    }
                )
            result["redeploy"] = {
                "runs": redeploys,
                "deploy_ms_median": round(statistics.median(r["deploy_ms"] for r in redeploys), 1)
                if redeploys
                else None,
                "last_holder_ms_median": round(
                    statistics.median(r["last_holder_ms"] for r in redeploys if r["last_holder_ms"]), 1
                )
                if any(r["last_holder_ms"] for r in redeploys)
                else None,
            }
            say(f"  {result['redeploy']}")
            result["ownership_after_redeploys"] = await _ownership(conn, pods)
            result["connections_peak"] = {phase: dict(v) for phase, v in monitor.peak.items()}

            # ---- stop
            tally.phase = monitor.phase = "stop"
            say("stop: every pod releases its slot ...")
            t = time.perf_counter()
            for p in pods:
                p.stopping.set()
            _, pending = await asyncio.wait(tasks, timeout=120)
            for task in list(pending)[:3]:  # what a pod that does not stop is waiting for
                task.print_stack(limit=8, file=sys.stderr)
            result["stop"] = {
                "all_released_s": round(time.perf_counter() - t, 2),
                "pods_not_stopped": len(pending),
                **(await _held(conn)),
            }
            say(f"  {result['stop']}")
            result["leases_lost_total"] = sum(p.figures.leases_lost for p in pods)
            result["slots_claimed_per_pod_max"] = max((p.figures.slots_claimed for p in pods), default=0)
    finally:
        for p in pods:
            p.stopping.set()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        result["event_loop_lag"] = lag.figures()
        await lag.close()
        await monitor.close()
        await admin_db.close()
    return result


def _all_saw_probe(pods: Sequence[SimPod], baseline: Sequence[int]) -> Callable[[], bool]:
    return lambda: all(len(p.figures.probe_seen) > n for p, n in zip(pods, baseline, strict=True))


def _all_switched(holders: Sequence[SimPod]) -> Callable[[], bool]:
    return lambda: all(p.switched.is_set() for p in holders)


def _share(after: dict[str, float], before: dict[str, float], table: str) -> float | None:
    updates = after.get(f"{table}_upd", 0) - before.get(f"{table}_upd", 0)
    if updates <= 0:
        return None
    return round((after.get(f"{table}_hot", 0) - before.get(f"{table}_hot", 0)) / updates, 3)


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _claim_plan(conn: Conn) -> dict[str, list[str]]:
    """EXPLAIN ANALYZE of both claim statements (free slots first, then any) by a pod that is not
    registered, rolled back: nothing changes."""
    from dormant_catalog.pods import _CLAIM, _CLAIM_FREE  # the statements themselves, not copies

    params = {"pod": "explain-only", "bases": [BASE_IMAGE], "ifaces": [PLATFORM_INTERFACE], "lease": 1.0}
    plans: dict[str, list[str]] = {}
    for name, statement in (("free", _CLAIM_FREE), ("any", _CLAIM)):
        try:
            async with conn.transaction(force_rollback=True):
                cur = await conn.execute(("EXPLAIN (ANALYZE, COSTS OFF) " + statement).encode(), params)
                plans[name] = [str(r[0]) for r in await cur.fetchall()]
        except psycopg.Error as exc:
            plans[name] = [f"EXPLAIN failed: {exc}"]
    return plans


# --------------------------------------------------------------------------- a private Postgres


class ScalePostgres(LocalPostgres):
    """``LocalPostgres`` with ``max_connections`` for the pool and ``pg_stat_statements`` loaded."""

    def __init__(self, *, data_dir: Path, max_connections: int) -> None:
        super().__init__(data_dir=data_dir)
        self.max_connections = max_connections

    def _server_argv(self, bin_dir: Path) -> list[str]:
        argv = super()._server_argv(bin_dir)
        argv = [
            f"max_connections={self.max_connections}" if a.startswith("max_connections=") else a for a in argv
        ]
        return [
            *argv,
            "-c",
            "shared_preload_libraries=pg_stat_statements",
            "-c",
            "pg_stat_statements.max=1000",
        ]


def connections_needed(config: ScaleConfig) -> int:
    """At most 3 pooled + 1 LISTEN + 1 migration connection per pod, and the run's own few."""
    return config.pod_count * 5 + 50


async def run(config: ScaleConfig, *, quiet: bool = False) -> dict[str, Any]:
    """Start a private Postgres sized for ``config``, ``simulate`` on a fresh database, stop it."""
    work = Path(tempfile.mkdtemp(prefix="dormant-catalog-scale-"))
    os.chmod(work, 0o755)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, config.pod_count * 6 + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        async with ScalePostgres(data_dir=work / "pg", max_connections=connections_needed(config)) as pg:
            url = await pg.create_database(f"scale_{uuid.uuid4().hex[:6]}")
            result = await simulate(url, config, server_pid=pg.pid, quiet=quiet)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
    result["when"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return result


def _lat(figures: dict[str, float] | None) -> str:
    return "-" if not figures else f"p50 {figures['p50_ms']:g} / p99 {figures['p99_ms']:g} ms"


def scale_report(r: dict[str, Any]) -> str:
    """The figures of a run as lines of text."""
    c, f, s, fo, rd, st = r["config"], r["fill"], r["steady"], r["fanout"], r["redeploy"], r["stop"]
    conn, memory = s["connections"], s.get("memory") or {}
    health = "on" if c["health"] else "off"
    lines = [
        f"catalog at scale: {c['deployments']} deployments x {c['replicas']} replicas = {c['slots']}"
        f" slots, {c['pods']} simulated pods, lease {c['lease_s']:g} s, health pings {health}",
        f"  fill: all pods listening after {f['all_listening_s']} s; {f['slots_held']} slots held"
        f" ({f['slots_unassigned']} unassigned) after {f['all_held_s']} s,"
        f" serving after {f['all_serving_s']} s",
        f"    claims/s {f['claims_per_s']} (first to last claim), {f['claims_per_s_from_start']}"
        f" from the start; {f['claim_attempts']} attempts ({f['empty_claims']} found nothing);"
        f" claim {_lat(f['claim_latency'])}; open_catalog {_lat(f['open_catalog'])};"
        f" connect failures {f['connect_failures']}",
        f"  steady ({s['seconds']} s, {s['pods_holding']} pods holding a slot): catalog calls/s"
        f" {s['catalog_calls_per_s_total']} ({s['catalog_calls_per_s_per_pod']} per pod:"
        f" {s['catalog_calls_per_s']}); renewals/s per holding pod {s['renewals_per_s_per_holding_pod']}",
        f"    server: {s.get('statements_per_s_total')} statements/s,"
        f" {s['transactions_per_s']} transactions/s, {s['rows_updated_per_s']} rows updated/s"
        f" (HOT: replica_slots {s['replica_slots_hot_update_share']}, pods {s['pods_hot_update_share']});"
        f" Postgres CPU {s['postgres_cpu_percent_of_one_core']} % of a core,"
        f" simulator {s['simulator_cpu_percent_of_one_core']} %",
        f"    renewal {_lat(s['renewal_latency'])}, ping {_lat(s['ping_latency'])},"
        f" simulator loop lag {_lat(s.get('event_loop_lag'))}; leases lost {s['leases_lost']}",
        f"    connections {conn['connections']} ({conn['listen']} LISTEN); backend private memory"
        f" {memory.get('backend_private_mb_mean', '-')} MB mean",
        f"  NOTIFY fan-out: {fo['delivered_per_notify']} of {fo['listeners']} listeners per notification,"
        f" the last after {fo['last_listener_ms_median']} ms (median of {len(fo['probes'])})",
        f"  redeploy: deploy {rd['deploy_ms_median']} ms, both holders switched after"
        f" {rd['last_holder_ms_median']} ms (medians)",
        f"  stop: released in {st['all_released_s']} s, {st['pods_not_stopped']} pods did not stop,"
        f" {st['held']} slots still held",
    ]
    for title, statements in (("fill", f.get("statements")), ("steady", s.get("statements"))):
        if statements:
            lines.append(f"  statements during {title} (per second, mean execution time):")
        for statement in statements or []:
            lines.append(
                f"    {statement['per_s']:>8}/s {statement['mean_ms']:>8} ms  {statement['query'][:70]}"
            )
    for name, plan in (r.get("claim_plan") or {}).items():
        lines.append(
            f"  claim statement ({name}) after the steady state: {plan[-1].strip() if plan else '-'}"
        )
    if "machine" in r:
        lines.append(f"  machine: {r['machine']}")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/catalog_scale.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--pods", type=int, help="simulated pods (default: one per slot plus --spare)")
    parser.add_argument("--spare", type=int, default=2)
    parser.add_argument("--lease", type=float, default=10.0, help="lease seconds (the sidecar's default: 10)")
    parser.add_argument("--steady-s", type=float, default=30.0)
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--redeploys", type=int, default=10)
    parser.add_argument("--no-health", action="store_true", help="leave out the pods' health pings")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    config = ScaleConfig(
        deployments=args.deployments,
        replicas=args.replicas,
        pods=args.pods,
        spare=args.spare,
        lease_s=args.lease,
        health=not args.no_health,
        steady_s=args.steady_s,
        probes=args.probes,
        redeploys=args.redeploys,
    )
    result = asyncio.run(run(config))
    text = json.dumps(result, indent=2)
    if args.json_out is not None:
        args.json_out.write_text(text + "\n")
    print(text)
    print(scale_report(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
