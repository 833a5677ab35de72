"""``LeaseKeeper``: a pod cut off from the catalog stops serving before its lease ends, even when its
renewals never answer (a connection a partition broke silently); a pod whose catalog's host still
answers (a database restart) keeps its slot. The catalog and the reachability probe are stand-ins
here; ``host_answers`` runs against sockets on the loopback; the multi-host fault test
(``tests/faults/test_multihost.py``) partitions a real pod from a real Postgres."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import pytest

from dormant_catalog import CatalogUnavailable, SlotClaim
from dormant_sidecar.lease import LEASE_END_MARGIN, LeaseKeeper, catalog_address, host_answers

CLAIM = SlotClaim(
    slot_id=7,
    app_name="svc",
    slot_index=0,
    version=1,
    generation=1,
    app_layer_image="svc@sha256:" + "0" * 64,
    base_image="dormant-python:1",
    platform_interface="dormant/1",
    interface_hash="h",
    live=True,
    lease_expires_at=datetime(2030, 1, 1, tzinfo=UTC),
)


class Catalog:
    """Answers renewals as ``mode`` says: ``ok`` (the claim), ``fail`` (unavailable at once, as while
    the database restarts), ``hang`` (never: a partition), ``gone`` (the slot is someone else's)."""

    url = "postgresql://dormant@catalog.invalid:5432/dormant"

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.sent: list[float] = []
        self.answered: list[float] = []
        """When (loop clock) each renewal that answered the claim was sent."""
        self.cancelled = 0
        self.attempted = asyncio.Event()
        self.renewed = asyncio.Event()

    async def renew_lease(self, pod_id: str, slot_id: int, *, lease_s: float) -> SlotClaim | None:
        sent = asyncio.get_running_loop().time()
        self.sent.append(sent)
        self.attempted.set()
        if self.mode == "fail":
            raise CatalogUnavailable("catalog database unreachable: connection refused")
        if self.mode == "hang":
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if self.mode == "gone":
            return None
        self.answered.append(sent)
        self.renewed.set()
        return CLAIM

    async def report_serving(self, pod_id: str, slot_id: int, generation: int) -> None:
        return None


class Probe:
    """The reachability of the catalog's host, as a test sets it; counts the questions."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.asked = 0
        self.was_asked = asyncio.Event()

    async def __call__(self) -> bool:
        self.asked += 1
        self.was_asked.set()
        return self.answers


def keeper(catalog: Catalog, probe: Probe, lease_s: float, **kwargs: object) -> LeaseKeeper:
    return LeaseKeeper(catalog, "pod-a", CLAIM, lease_s=lease_s, reachable=probe, **kwargs)  # type: ignore[arg-type]


async def test_a_pod_whose_renewals_never_answer_stops_serving_before_its_lease_ends() -> None:
    catalog, probe = Catalog(), Probe(answers=False)
    lease_s = 0.3
    lease = keeper(catalog, probe, lease_s)
    lease.start()
    try:
        for _ in range(2):  # two renewals answered, then the partition
            catalog.renewed.clear()
            await asyncio.wait_for(catalog.renewed.wait(), 30)
        catalog.mode = "hang"
        await asyncio.wait_for(lease.changed.wait(), 30)
    finally:
        await lease.stop()
    assert lease.lost and probe.asked == 1
    # It stopped at the last answered renewal's lease, less the margin: the database set that lease's
    # end when the renewal ran, after it was sent.
    last = catalog.answered[-1]
    assert lease.stop_serving_at <= last + lease_s * (1 - LEASE_END_MARGIN) < last + lease_s
    assert catalog.cancelled >= 1  # the renewal with no answer was given up, not waited for


async def test_a_pod_keeps_its_slot_while_the_catalogs_host_answers() -> None:
    """Renewals fail past the lease's end while the database restarts (its host refuses connections):
    no pod can take the slot over meanwhile, so the pod keeps serving, and its next renewal holds."""
    catalog, probe = Catalog(mode="fail"), Probe(answers=True)
    lease = keeper(catalog, probe, 0.3)
    lease.start()
    try:
        for _ in range(3):  # past the lease's end, asked again every renewal interval
            probe.was_asked.clear()
            await asyncio.wait_for(probe.was_asked.wait(), 30)
        assert not lease.lost and not lease.changed.is_set()
        overdue_end = lease.stop_serving_at
        catalog.mode = "ok"
        await asyncio.wait_for(catalog.renewed.wait(), 30)
        await asyncio.sleep(0.05)  # the keeper takes the answer in
    finally:
        await lease.stop()
    assert not lease.lost and not lease.changed.is_set()
    assert overdue_end < lease.stop_serving_at <= catalog.answered[0] + 0.3 * (1 - LEASE_END_MARGIN)


async def test_a_restart_that_turns_into_a_partition_stops_serving() -> None:
    catalog, probe = Catalog(mode="fail"), Probe(answers=True)
    lease = keeper(catalog, probe, 0.3)
    lease.start()
    try:
        await asyncio.wait_for(probe.was_asked.wait(), 30)
        probe.answers = False
        await asyncio.wait_for(lease.changed.wait(), 30)
    finally:
        await lease.stop()
    assert lease.lost and probe.asked >= 2


async def test_a_slot_taken_over_is_lost_at_once() -> None:
    catalog, probe = Catalog(mode="gone"), Probe(answers=True)
    wake = asyncio.Event()
    lease = keeper(catalog, probe, 60.0, wake=wake)
    lease.start()
    try:
        wake.set()
        await asyncio.wait_for(lease.changed.wait(), 30)
    finally:
        await lease.stop()
    assert lease.lost and len(catalog.sent) == 1 and probe.asked == 0


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("postgresql://dormant:secret@db.example:6543/catalog", ("db.example", 6543)),
        ("postgresql://dormant@10.1.2.3/catalog", ("10.1.2.3", 5432)),
        ("host=db.example port=5433 dbname=catalog", ("db.example", 5433)),
        ("host=db.example hostaddr=10.1.2.3 dbname=catalog", ("10.1.2.3", 5432)),
        ("postgresql://a.example,b.example/catalog", None),
        ("host=/run/postgresql dbname=catalog", None),
        ("dbname=catalog", None),
        ("postgresql://[bad", None),
    ],
)
def test_the_catalogs_address_is_one_tcp_host_and_port(url: str, address: tuple[str, int] | None) -> None:
    assert catalog_address(url) == address


async def test_a_host_answers_when_it_accepts_or_refuses_a_connection() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = listening.getsockname()[1]
        assert await host_answers(("127.0.0.1", port), 5.0)
    assert await host_answers(("127.0.0.1", port), 5.0)  # closed now: refused, but the host answered
