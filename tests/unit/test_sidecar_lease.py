"""``LeaseKeeper``: a pod keeps its slot through catalog errors shorter than its lease, and stops serving
before its lease ends when no renewal succeeds (a renewal on a silently broken connection never
answers: the keeper must not wait for it). The catalog is a stand-in; the multi-host fault test
(``tests/faults/test_multihost.py``) partitions a real pod from a real Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from dormant_catalog import CatalogUnavailable, SlotClaim
from dormant_sidecar.lease import LEASE_END_MARGIN, LeaseKeeper

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
    """Answers renewals as ``mode`` says: ``ok`` (the claim), ``fail`` (unavailable), ``hang`` (never)."""

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


def keeper(catalog: Catalog, lease_s: float, **kwargs: object) -> LeaseKeeper:
    return LeaseKeeper(catalog, "pod-a", CLAIM, lease_s=lease_s, **kwargs)  # type: ignore[arg-type]


async def test_renewals_that_never_answer_stop_serving_before_the_lease_ends() -> None:
    catalog = Catalog()
    lease_s = 0.3
    lease = keeper(catalog, lease_s)
    lease.start()
    try:
        for _ in range(2):  # two renewals answered, then the partition
            catalog.renewed.clear()
            await asyncio.wait_for(catalog.renewed.wait(), 30)
        catalog.mode = "hang"
        await asyncio.wait_for(lease.changed.wait(), 30)
    finally:
        await lease.stop()
    assert lease.lost
    # The end it stopped at is the last answered renewal's lease, less the margin: the database set
    # that lease's end when the renewal ran, after it was sent.
    last = catalog.answered[-1]
    assert lease.stop_serving_at <= last + lease_s * (1 - LEASE_END_MARGIN) < last + lease_s
    assert catalog.cancelled >= 1  # the renewal with no answer was given up, not waited for


async def test_errors_shorter_than_the_lease_keep_the_slot() -> None:
    catalog = Catalog(mode="fail")
    wake = asyncio.Event()
    lease = keeper(catalog, 60.0, wake=wake)
    lease.start()
    try:
        wake.set()  # a renewal now: it fails (a database restart)
        await asyncio.wait_for(catalog.attempted.wait(), 30)
        first_end = lease.stop_serving_at
        catalog.mode = "ok"
        wake.set()  # the next one succeeds
        await asyncio.wait_for(catalog.renewed.wait(), 30)
        await asyncio.sleep(0.05)  # the keeper takes the answer in
    finally:
        await lease.stop()
    assert not lease.lost and not lease.changed.is_set()
    # Renewed: the lease now ends a lease after that renewal was sent.
    assert first_end < lease.stop_serving_at <= catalog.answered[0] + 60.0 * (1 - LEASE_END_MARGIN)


async def test_errors_until_the_lease_ends_stop_serving() -> None:
    catalog = Catalog(mode="fail")
    claimed_at = asyncio.get_running_loop().time()
    lease = keeper(catalog, 0.3, claimed_at=claimed_at)
    lease.start()
    try:
        await asyncio.wait_for(lease.changed.wait(), 30)
    finally:
        await lease.stop()
    assert lease.lost
    assert lease.stop_serving_at == claimed_at + 0.3 * (1 - LEASE_END_MARGIN)
    assert catalog.sent and catalog.answered == []


async def test_a_slot_taken_over_is_lost_at_once() -> None:
    catalog = Catalog(mode="gone")
    wake = asyncio.Event()
    lease = keeper(catalog, 60.0, wake=wake)
    lease.start()
    try:
        wake.set()
        await asyncio.wait_for(lease.changed.wait(), 30)
    finally:
        await lease.stop()
    assert lease.lost and len(catalog.sent) == 1
