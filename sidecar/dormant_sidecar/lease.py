"""``LeaseKeeper``: renews a claimed slot's lease every ``lease_s / 3`` and reports what changed.

Renewal failures (the catalog being down) are logged and retried: a pod keeps serving through a
database restart shorter than its lease. It never serves past its lease, though: once the lease
(counted from when the last successful renewal, or the claim, was sent: never later than the end the
database recorded) is about to end without a renewal, the slot counts as lost, and the pod stops
serving it, so that a pod cut off from the catalog (a network partition, whose renewals get no answer
at all) has stopped taking the slot's calls before another pod may take the slot over. It claims a
slot again (its own, if nobody took it) once the catalog answers. ``changed`` is set when the slot's
target moves (new version, generation or live flag) or when the slot is lost. Setting ``wake`` (the
pod's NOTIFY watch on its service) makes it renew at once, so a redeploy is seen in milliseconds
rather than at the next renewal. ``serving`` reports the generation the pod has loaded, which is what
``deployment_status`` counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from dormant_catalog import Catalog, SlotClaim

from .tasks import stop_task

log = logging.getLogger("dormant.sidecar")

LEASE_END_MARGIN = 0.05
"""The part of the lease before its end at which a pod that could not renew it stops serving."""
T = TypeVar("T")


def _forget(task: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned statement's outcome, so that asyncio does not report it as unretrieved."""
    if not task.cancelled():
        task.exception()


class LeaseKeeper:
    def __init__(
        self,
        catalog: Catalog,
        pod_id: str,
        claim: SlotClaim,
        *,
        lease_s: float,
        wake: asyncio.Event | None = None,
        claimed_at: float | None = None,
    ) -> None:
        self._catalog = catalog
        self._wake = wake if wake is not None else asyncio.Event()
        self._serving: int | None = None
        self._reported: int | None = None
        self._pod_id = pod_id
        self._lease_s = lease_s
        self.claim = claim
        """The slot as last seen by the catalog (its current target)."""
        self.lost = False
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Future[Any]] = set()
        if claimed_at is None:  # when the claim was sent, by the event loop's clock; else about now
            claimed_at = asyncio.get_running_loop().time()
        self.stop_serving_at = claimed_at + self._lease_s * (1 - LEASE_END_MARGIN)
        """When (by the event loop's clock) the pod must have stopped serving unless a renewal succeeds
        first: the lease's end as last renewed (or claimed), less a margin."""

    @property
    def slot_id(self) -> int:
        return self.claim.slot_id

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.claim.slot_id}")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)  # not a bare cancel(): see tasks.py
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self._lease_s / 3
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, min(interval, self._time_left(loop))))
            self._wake.clear()
            sent = loop.time()
            try:
                renewed = await self._within_lease(
                    self._catalog.renew_lease(self._pod_id, self.claim.slot_id, lease_s=self._lease_s), loop
                )
            except Exception as exc:  # the catalog being away stops serving only at the lease's end
                if self._time_left(loop) <= 0:
                    log.warning(
                        "cannot renew the lease on slot %s (%s) before it ends: the pod stops serving it"
                        " (its calls go to the other replicas; it is claimed again once the catalog answers)",
                        self.claim.slot_id,
                        self.claim.app_name,
                    )
                    self.lost = True
                    self.changed.set()
                    return
                if not failing:
                    log.warning(
                        "cannot renew the lease on slot %s (still serving, will retry): %s",
                        self.claim.slot_id,
                        exc,
                    )
                failing = True
                continue
            if failing:
                log.info("lease on slot %s renewed again", self.claim.slot_id)
                failing = False
            self.stop_serving_at = sent + self._lease_s * (1 - LEASE_END_MARGIN)
            if renewed is None:
                log.warning("slot %s (%s) is no longer ours", self.claim.slot_id, self.claim.app_name)
                self.lost = True
                self.changed.set()
                return
            previous, self.claim = self.claim, renewed
            if renewed.target != previous.target:
                self.changed.set()
            with contextlib.suppress(TimeoutError):  # tried again after the next renewal
                await self._within_lease(self._report(), loop)

    def _time_left(self, loop: asyncio.AbstractEventLoop) -> float:
        return self.stop_serving_at - loop.time()

    async def _within_lease(self, work: Coroutine[Any, Any, T], loop: asyncio.AbstractEventLoop) -> T:
        """``work``'s result, or TimeoutError once the lease is over. A statement on a connection that
        a partition broke silently gets no answer (nor an error) for many minutes, and the driver's own
        cancellation of it may wait seconds more: that is left to finish in the background."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=max(0.0, self._time_left(loop)))
        if not done:
            task.cancel()
            self._abandoned.add(task)
            task.add_done_callback(_forget)
            task.add_done_callback(self._abandoned.discard)
            raise TimeoutError
        return task.result()

    def serving(self, generation: int) -> None:
        """The pod now serves ``generation`` of the slot: report it at once (and again until it sticks)."""
        self._serving = generation
        self._wake.set()

    async def _report(self) -> None:
        if self._serving is None or self._serving == self._reported:
            return
        try:
            await self._catalog.report_serving(self._pod_id, self.claim.slot_id, self._serving)
        except Exception as exc:
            log.warning("cannot report slot %s as serving (will retry): %s", self.claim.slot_id, exc)
        else:
            self._reported = self._serving
