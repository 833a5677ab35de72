"""Multi-host faults (issue 14 item 5): a mesh whose broker, Postgres, registry, gateway, controller and
three pods each have a host of their own (``netns``, ``multihost``), and the network between them
failing.

1. A serving pod's link is cut: its slot moves to the spare pod on another host (lease expiry, then
   the slot's broker session resumed there), calls go on: 0 lost, 0 doubled.
2. The gateway's link to the broker is cut: HTTP calls get typed errors (503 / 504), then succeed
   again once the link is back; retried with the same Idempotency-Key, each call's effect is once.
3. 50 ms and 1 % loss on every packet between the pods and the broker, both ways (``netns.impaired``:
   netem's model, in user space where the kernel has no ``sch_netem``): every call succeeds; the
   latency percentiles are printed.
4. Postgres is partitioned from a serving pod: the pod stops serving before its lease ends, the spare
   takes the slot over, nothing is doubled.

In 1 and 4 the cut-off pod must stop serving on its own (its log says so) and must not take the slot's
broker session back from the spare (its runtime never reconnects; the spare's, once serving, never
loses its connection); by how much it beat its lease's end (the database's record) is printed.

One topology serves the whole module (about 80 s on a quiet 2-core machine; ``-s`` shows the figures);
each test starts by waiting until the mesh is whole again (two slots served, every link up). Calls carry
their own callIds; the handler counts its runs in a file and its effects in the DataStore, which commits
them with the stored answer (``ledger.py``). Nothing waits on timing luck: conditions are polled with
generous deadlines; the only time bound asserted is a lower one that the injected delay guarantees.

Where namespaces cannot be made (not root, no iproute2, a sandbox refusing ``unshare``) the module is
skipped with the reason, which also shows in the warnings summary of every run (CI's included).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio
from e2e.mesh import caller_token

from dormant import Client
from dormant.errors import DormantError

from .ledger import doubled
from .multihost import POD_NAMES, HostMesh, start_mesh, until
from .netns import (
    LeftBehind,
    alive,
    impairment_unavailable_reason,
    link_names,
    netns_names,
    sweep_stale,
    topology,
    unavailable_reason,
)

pytestmark = pytest.mark.slow

SERVICE = "ledger-service"
LOAD_RATE = 40
"""Calls a second during a fault: enough that every fault meets calls in flight, little CPU."""


class MultiHostSkipped(UserWarning):
    """Shown in the warnings summary of every run (CI's included) when the multi-host tests cannot run."""


def _skip(reason: str) -> None:
    message = f"multi-host fault tests skipped: {reason}"
    warnings.warn(MultiHostSkipped(message), stacklevel=2)
    pytest.skip(message)


@contextlib.contextmanager
def _registry_insecure() -> Iterator[None]:
    """Publishing from this process pushes to the registry host over plain HTTP (not a loopback host)."""
    before = os.environ.get("DORMANT_REGISTRY_INSECURE")
    os.environ["DORMANT_REGISTRY_INSECURE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DORMANT_REGISTRY_INSECURE", None)
        else:
            os.environ["DORMANT_REGISTRY_INSECURE"] = before


@pytest_asyncio.fixture(scope="module")
async def hosts(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[HostMesh]:
    reason = unavailable_reason()
    if reason is not None:
        _skip(reason)
    work = tmp_path_factory.mktemp("multihost")
    with topology(work) as net:
        mesh = await start_mesh(net, work)
        try:
            with caller_token(mesh.mesh.identity.token("tester")), _registry_insecure():
                await mesh.ledger.setup(replicas=2)
                await _record_leases(mesh)
                for name in POD_NAMES:
                    mesh.start_pod(name)
                mesh.start_controller()
                await mesh.start_gateway()
                await mesh.mesh.wait_serving(SERVICE)
                yield mesh
        finally:
            await mesh.stop()


def test_a_topology_leaves_nothing_behind(tmp_path: Path) -> None:
    """The plumbing's own guarantee: on the way out every process on a host is ended, one that would
    not stop is reported (and killed), and no namespace, link or bridge with the topology's tag is left,
    even when the block failed."""
    reason = unavailable_reason()
    if reason is not None:
        _skip(reason)
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('deaf', flush=True);"
        " time.sleep(600)"
    )
    with pytest.raises(LeftBehind) as caught:
        with topology(tmp_path, exit_wait_s=1.0) as net:
            polite, other = net.add_host("a"), net.add_host("b")
            polite.spawn(
                [sys.executable, "-c", "import time; time.sleep(600)"], name="polite", log_file=tmp_path / "p"
            )
            process = other.spawn([sys.executable, "-c", stubborn], name="stubborn", log_file=tmp_path / "s")
            net.block(polite, other)
            tag = net.tag
            deadline = time.monotonic() + 60
            while "deaf" not in process.log():  # it ignores SIGTERM from here on
                assert process.running and time.monotonic() < deadline
                time.sleep(0.01)
            raise RuntimeError("the test failed")
    assert "stubborn" in str(caught.value) and "polite" not in str(caught.value)
    assert isinstance(caught.value.__context__, RuntimeError)
    assert not process.running
    assert not [n for n in netns_names() if n.startswith(tag)] and not [n for n in link_names() if tag in n]


def test_what_a_killed_test_process_left_is_swept(tmp_path: Path) -> None:
    """A test process SIGKILLed inside its topology cleans nothing up: its host processes die with it
    (parent-death signal), and the next topology made on the machine deletes its namespaces and links."""
    reason = unavailable_reason()
    if reason is not None:
        _skip(reason)
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from pathlib import Path;"
        " from faults.netns import topology\n"
        "with topology(Path(sys.argv[2])) as net:\n"
        "    host = net.add_host('a')\n"
        "    sleeper = host.spawn([sys.executable, '-c', 'import time; time.sleep(600)'], name='sleeper',"
        " log_file=Path(sys.argv[2]) / 'sleeper.log')\n"
        "    print(net.tag, sleeper.pid, flush=True)\n"
        "    time.sleep(600)\n"
    )
    victim = subprocess.Popen(
        [sys.executable, "-c", script, str(Path(__file__).parents[1]), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert victim.stdout is not None
    tag, pid = victim.stdout.readline().split()
    assert [n for n in netns_names() if n.startswith(tag)]
    victim.kill()
    victim.wait(30)
    deadline = time.monotonic() + 30
    while alive(int(pid)):  # the host's process dies with the test process
        assert time.monotonic() < deadline, f"process {pid} outlived the test process that started it"
        time.sleep(0.05)
    removed = sweep_stale()
    assert f"namespace {tag}-a" in removed
    assert not [n for n in netns_names() if n.startswith(tag)] and not [n for n in link_names() if tag in n]


async def _record_leases(hosts: HostMesh) -> None:
    """Test instrumentation in this module's own catalog: every lease a pod takes or renews, kept in
    ``multihost_leases`` (slot, pod, end by the database clock), so that a test knows when the last
    lease of a pod that went away ended (the slot's row only has its new holder's by then)."""
    async with await psycopg.AsyncConnection.connect(hosts.catalog_url, autocommit=True) as conn:
        await conn.execute(
            "CREATE UNLOGGED TABLE multihost_leases"
            " (slot_id bigint, pod_id text, lease_expires_at timestamptz)"
        )
        await conn.execute(
            "CREATE FUNCTION multihost_lease() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " INSERT INTO multihost_leases VALUES (NEW.slot_id, NEW.pod_id, NEW.lease_expires_at);"
            " RETURN NULL; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER multihost_lease AFTER INSERT OR UPDATE OF lease_expires_at ON replica_slots"
            " FOR EACH ROW WHEN (NEW.pod_id IS NOT NULL) EXECUTE FUNCTION multihost_lease()"
        )


async def _whole(hosts: HostMesh) -> tuple[list[str], str]:
    """Wait until every pod runs and two of them serve; returns (the serving pods, the spare)."""
    for name, process in hosts.pod_processes.items():
        assert process.running, f"{name} exited ({process.returncode}):\n{process.log()[-3000:]}"

    async def two_serving() -> bool:
        return len(await hosts.serving_pods()) == 2

    await until(two_serving, within=60, what="two pods serve ledger-service")
    serving = sorted(await hosts.serving_pods())
    (spare,) = set(POD_NAMES) - set(serving)
    return serving, spare


# ---------------------------------------------------------------------- load


@dataclass
class Load:
    ok: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return f"{len(self.ok)} ok, {len(self.failed)} failed {sorted(set(self.failed.values()))}"

    def percentile(self, p: float) -> float:
        values = sorted(self.latency_ms.values())
        return values[min(len(values) - 1, int(len(values) * p / 100))]


async def load(
    hosts: HostMesh,
    *,
    duration: float,
    prefix: str,
    rate: float = LOAD_RATE,
    ms: int = 5,
    timeout: float = 90,
) -> Load:
    """``rate`` calls a second for ``duration`` s from four clients, each call with its own callId
    (a late answer is asked for again with the same callId, as ``dormant.Client`` does)."""
    result = Load()
    clients = [Client(hosts.broker_url, timeout=timeout) for _ in range(4)]
    for client in clients:
        await client.connect()
    try:

        async def one(index: int) -> None:
            call_id = f"{prefix}-{index}"
            started = time.perf_counter()
            try:
                result.ok[call_id] = await clients[index % len(clients)].call(
                    SERVICE, "record", {"item": call_id, "ms": ms}, call_id=call_id
                )
            except DormantError as exc:
                result.failed[call_id] = exc.type
            else:
                result.latency_ms[call_id] = (time.perf_counter() - started) * 1000

        calls = []
        start = time.monotonic()
        for index in range(round(rate * duration)):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            calls.append(asyncio.create_task(one(index)))
        await asyncio.gather(*calls)
    finally:
        for client in clients:
            await client.close()
    return result


async def _assert_once_each(hosts: HostMesh, result: Load) -> None:
    """0 lost (every call answered, with its own item) and 0 doubled (one committed effect each)."""
    assert result.failed == {}, result.summary()
    assert all(answer["item"] == call_id for call_id, answer in result.ok.items())
    effects = await hosts.ledger.effects()
    assert doubled(effects, result.ok) == {}
    assert [i for i in result.ok if effects[i] != 1] == []


async def _slot_holder(hosts: HostMesh, slot_id: int) -> tuple[str | None, bool]:
    for slot in await hosts.slots():
        if slot.slot_id == slot_id:
            return slot.pod_id, slot.serving
    raise AssertionError(f"slot {slot_id} is gone")


async def _slot_of(hosts: HostMesh, pod: str) -> int:
    (slot_id,) = [s.slot_id for s in await hosts.slots() if s.pod_id == pod]
    return slot_id


async def _moved(hosts: HostMesh, slot_id: int, to: str) -> bool:
    return await _slot_holder(hosts, slot_id) == (to, True)


# ---------------------------------------------------------------------- 1. a pod's link cut


async def test_a_pod_cut_off_the_network_has_its_slot_served_on_another_host(hosts: HostMesh) -> None:
    await _serving_pod_cut_off(
        hosts,
        "pod link cut",
        cut=lambda pod: hosts.net.cut(hosts.pods[pod]),
        heal=lambda pod: hosts.net.heal(hosts.pods[pod]),
    )


async def _serving_pod_cut_off(
    hosts: HostMesh, what: str, *, cut: Callable[[str], None], heal: Callable[[str], None]
) -> None:
    """Cut a serving pod off (``cut``) two seconds into a load, until the spare serves its slot and the
    load is over; then ``heal``. Every call is answered once; the cut-off pod stopped serving the slot
    itself, when it could not renew its lease, and never took the slot's broker session back: the
    slot's new runtime keeps its connection, and both slots answer calls again after the heal."""
    (victim, _), spare = await _whole(hosts)
    slot_id = await _slot_of(hosts, victim)
    offsets = {pod: len(hosts.pod_log(pod)) for pod in POD_NAMES}
    prefix = f"{what.split()[0]}-{uuid.uuid4().hex[:6]}"
    calls = asyncio.create_task(load(hosts, duration=12, prefix=prefix))
    await asyncio.sleep(2)
    cut(victim)
    cut_at = datetime.now(UTC)
    try:
        takeover = await until(
            lambda: _moved(hosts, slot_id, spare), within=60, what=f"{spare} serves {victim}'s slot"
        )
        result = await calls
    finally:
        heal(victim)
    print(
        f"\n{what} ({victim}): {result.summary()}; {spare} serves its slot {takeover:.1f} s after the cut;"
        f" latency p50 {result.percentile(50):.0f} ms, p99 {result.percentile(99):.0f} ms,"
        f" max {max(result.latency_ms.values()):.0f} ms"
    )
    await _assert_once_each(hosts, result)
    await _until_both_slots_answer(hosts, prefix=f"{prefix}-after")
    victim_log = _records(hosts.pod_log(victim)[offsets[victim] :])
    spare_log = _records(hosts.pod_log(spare)[offsets[spare] :])
    stopped = [r for r in victim_log if "before it ends: the pod stops serving" in r["message"]]
    assert stopped, f"{victim} never stopped serving on its own:\n{_tail(victim_log)}"
    lease_end = await _last_lease_end(hosts, slot_id, victim)
    print(
        f"{victim} stopped serving {(stopped[0]['at'] - cut_at).total_seconds():.2f} s after the cut,"
        f" {(lease_end - stopped[0]['at']).total_seconds() * 1000:.0f} ms before its lease ended"
    )
    # No tug of war over the slot's broker session: the cut-off pod's runtime never reconnected, and
    # the spare's runtime, once serving, never lost its connection.
    assert [r for r in victim_log if "reconnecting" in r["message"]] == [], _tail(victim_log)
    serving = [i for i, r in enumerate(spare_log) if r["message"].startswith("serving ledger-service")]
    assert serving, _tail(spare_log)
    lost = [r for r in spare_log[serving[0] :] if "connection lost" in r["message"]]
    assert lost == [], _tail(spare_log)


def _records(log: str) -> list[dict[str, Any]]:
    """A pod's JSON log lines (sidecar and runtime), each with ``at``: its time as a datetime."""
    records = []
    for line in log.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "timestamp" in record:
            record["at"] = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
            record["message"] = str(record.get("message", ""))
            records.append(record)
    return records


def _tail(records: list[dict[str, Any]]) -> str:
    return "\n".join(f"{r['timestamp']} {r.get('component')} {r['message'][:200]}" for r in records[-30:])


async def _last_lease_end(hosts: HostMesh, slot_id: int, pod: str) -> datetime:
    """The end of ``pod``'s last lease on ``slot_id``, by the database's clock (``slot_leases``)."""
    async with await psycopg.AsyncConnection.connect(hosts.catalog_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT max(lease_expires_at) FROM multihost_leases WHERE slot_id = %s AND pod_id = %s",
            (slot_id, pod),
        )
        row = await cur.fetchone()
    assert row is not None and row[0] is not None
    end: datetime = row[0]
    return end


async def _until_both_slots_answer(hosts: HostMesh, *, prefix: str) -> None:
    """Both serving pods' runtimes answer calls (the broker shares the calls between them), each call
    once: a slot whose runtime lost its session would leave one runtime answering them all."""
    attempt = 0

    async def two_runtimes_answer() -> bool:
        nonlocal attempt
        attempt += 1
        result = await load(hosts, duration=1, rate=20, prefix=f"{prefix}-{attempt}", ms=0, timeout=30)
        await _assert_once_each(hosts, result)
        return len({answer["pid"] for answer in result.ok.values()}) == 2

    await until(two_runtimes_answer, within=90, what="both slots' runtimes answer calls", interval=0.5)


# ---------------------------------------------------------------------- 2. the gateway's broker link cut


async def test_the_gateway_cut_off_the_broker_answers_typed_errors_then_recovers(hosts: HostMesh) -> None:
    await _whole(hosts)
    token = hosts.mesh.identity.token("tester", "developer")
    prefix = f"gw-{uuid.uuid4().hex[:6]}"
    status, body = await asyncio.to_thread(hosts.invoke, f"{prefix}-before", token, timeout_s=10)
    assert status == 200, body
    hosts.net.block(hosts.gateway, hosts.broker)
    failed: dict[str, tuple[int, Any]] = {}
    try:
        for index in range(4):
            item = f"{prefix}-cut-{index}"
            status, body = await asyncio.to_thread(hosts.invoke, item, token, timeout_s=2)
            failed[item] = (status, body)
    finally:
        hosts.net.unblock(hosts.gateway, hosts.broker)
    healed_at = time.monotonic()
    errors = {item: (status, (body or {}).get("type")) for item, (status, body) in failed.items()}
    print(f"\ngateway cut off the broker: {errors}")
    expected = {503: "Unavailable", 504: "TimeoutError"}
    for item, (status, body) in failed.items():
        assert status in expected and body is not None and body.get("type") == expected[status], (item, body)
    recovered: list[str] = []

    async def answers_again() -> bool:
        item = f"{prefix}-after-{len(recovered)}"
        recovered.append(item)
        status, _ = await asyncio.to_thread(hosts.invoke, item, token, timeout_s=3)
        return status == 200

    await until(answers_again, within=90, what="the gateway answers calls again", interval=0.2)
    print(f"gateway answers again {time.monotonic() - healed_at:.1f} s after the link came back")
    # The failed calls, retried with the same Idempotency-Key: each answered, each effect once (a
    # request the gateway sent before its 504 may have run when the link came back: not again).
    for item in failed:
        status, body = await asyncio.to_thread(hosts.invoke, item, token, timeout_s=30)
        assert status == 200 and body is not None and body["item"] == item, (item, status, body)
    effects = await hosts.effects_by_item()
    assert {item: effects.get(item) for item in failed} == dict.fromkeys(failed, 1)
    assert effects.get(recovered[-1]) == 1


# ---------------------------------------------------------------------- 3. latency and loss


async def test_calls_succeed_with_latency_and_loss_between_pods_and_broker(hosts: HostMesh) -> None:
    reason = impairment_unavailable_reason()
    if reason is not None:
        _skip(reason)
    await _whole(hosts)
    pods = [hosts.pods[name] for name in POD_NAMES]
    with hosts.net.impaired(pods, hosts.broker, delay_ms=50, loss=0.01) as netem:
        result = await load(hosts, duration=10, prefix=f"netem-{uuid.uuid4().hex[:6]}")
    print(
        f"\n50 ms + 1 % loss between pods and broker: {result.summary()}; latency p50"
        f" {result.percentile(50):.0f} ms, p90 {result.percentile(90):.0f} ms,"
        f" p99 {result.percentile(99):.0f} ms, max {max(result.latency_ms.values()):.0f} ms;"
        f" {netem.forwarded} packets delayed,"
        f" {netem.dropped} dropped"
    )
    await _assert_once_each(hosts, result)
    assert netem.dropped > 0 and netem.forwarded > 0
    # A request reaches a pod and its answer comes back: two crossings of 50 ms each at least.
    assert min(result.latency_ms.values()) >= 100


# ---------------------------------------------------------------------- 4. Postgres partitioned from a pod


async def test_a_pod_cut_off_postgres_stops_serving_before_its_lease_ends(hosts: HostMesh) -> None:
    await _serving_pod_cut_off(
        hosts,
        "postgres partitioned",
        cut=lambda pod: hosts.net.block(hosts.pods[pod], hosts.postgres),
        heal=lambda pod: hosts.net.unblock(hosts.pods[pod], hosts.postgres),
    )
