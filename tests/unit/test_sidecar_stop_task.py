"""``stop_task`` ends a background loop even when a cancellation is lost, as Python 3.11's
``asyncio.wait_for`` loses one that arrives in the step in which the awaited thing completes; and the
sidecar's lease keeper stops when its wake event (a NOTIFY about its service) comes in that same step.
Found by the catalog-scale simulation: one simulated pod in five never finished stopping."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from dormant_catalog import SlotClaim
from dormant_sidecar.lease import LeaseKeeper
from dormant_sidecar.tasks import stop_task

CLAIM = SlotClaim(
    slot_id=3,
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


async def _waiter(event: asyncio.Event, rounds: list[int]) -> None:
    """The shape of the sidecar's loops: wait for an event (or a timeout) with wait_for, then work."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), 30)
        event.clear()
        rounds.append(1)


async def _started(task: asyncio.Task[Any]) -> None:
    for _ in range(5):  # let it reach its wait_for
        await asyncio.sleep(0)
    assert not task.done()


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="asyncio.wait_for keeps the cancellation since 3.12")
async def test_a_bare_cancel_is_lost_on_python_3_11() -> None:
    """The defect itself: cancel() in the step the event is set, and the loop runs on."""
    event, rounds = asyncio.Event(), []
    task = asyncio.create_task(_waiter(event, rounds))
    await _started(task)
    event.set()
    task.cancel()
    await asyncio.wait({task}, timeout=0.5)
    lost = not task.done()
    await stop_task(task)
    if not lost:
        pytest.skip("this Python keeps a cancellation that meets a result")
    assert rounds == [1]  # cancelled, yet it ran another round


async def test_stop_task_ends_a_loop_whose_cancellation_was_lost() -> None:
    event, rounds = asyncio.Event(), []
    task = asyncio.create_task(_waiter(event, rounds))
    await _started(task)
    event.set()
    await asyncio.wait_for(stop_task(task, again_after_s=0.05), 30)
    assert task.cancelled()


async def test_stop_task_raises_what_the_task_raised_and_keeps_the_callers_cancellation() -> None:
    async def fails() -> None:
        raise ValueError("broken")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(ValueError, match="broken"):
        await stop_task(failed)

    give_up = asyncio.Event()

    async def stubborn() -> None:
        while not give_up.is_set():  # ignores every cancellation until told
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)

    inner = asyncio.create_task(stubborn())
    stopper = asyncio.create_task(stop_task(inner, again_after_s=0.05))
    await asyncio.sleep(0.2)
    stopper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopper
    assert not inner.done()
    give_up.set()
    await asyncio.wait_for(stop_task(inner, again_after_s=0.05), 30)
    assert inner.done()


class _Catalog:
    """Answers every renewal with the claim, and counts them."""

    def __init__(self) -> None:
        self.renewals = 0

    async def renew_lease(self, pod_id: str, slot_id: int, *, lease_s: float) -> SlotClaim | None:
        self.renewals += 1
        return CLAIM

    async def report_serving(self, pod_id: str, slot_id: int, generation: int) -> bool:
        return True


async def test_the_lease_keeper_stops_when_a_notify_comes_in_the_same_step() -> None:
    catalog, wake = _Catalog(), asyncio.Event()
    lease = LeaseKeeper(catalog, "pod-a", CLAIM, lease_s=3.0, wake=wake)  # type: ignore[arg-type]
    lease.start()
    task = lease._task
    assert task is not None
    await _started(task)
    wake.set()  # a NOTIFY about the pod's service, in the step in which the pod stops
    await asyncio.wait_for(lease.stop(), 30)
    assert task.done()
    renewed = catalog.renewals
    await asyncio.sleep(1.5)  # past a renewal interval (1 s): nobody renews the lease any more
    assert catalog.renewals == renewed
