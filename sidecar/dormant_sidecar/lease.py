"""``LeaseKeeper``: renews a claimed slot's lease every ``lease_s / 3`` and reports what changed.

Renewal failures (the catalog being down) are logged and retried: a pod keeps serving through a
database restart. ``changed`` is set when the slot's target moves (new version, generation or live
flag) or when the slot is lost. Setting ``wake`` (the pod's NOTIFY watch on its service) makes it
renew at once, so a redeploy is seen in milliseconds rather than at the next renewal. ``serving``
reports the generation the pod has loaded, which is what ``deployment_status`` counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from dormant_catalog import Catalog, SlotClaim

log = logging.getLogger("dormant.sidecar")


class LeaseKeeper:
    def __init__(
        self,
        catalog: Catalog,
        pod_id: str,
        claim: SlotClaim,
        *,
        lease_s: float,
        wake: asyncio.Event | None = None,
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

    @property
    def slot_id(self) -> int:
        return self.claim.slot_id

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"lease-{self.claim.slot_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        interval = self._lease_s / 3
        failing = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), interval)
            self._wake.clear()
            try:
                renewed = await self._catalog.renew_lease(
                    self._pod_id, self.claim.slot_id, lease_s=self._lease_s
                )
            except Exception as exc:  # the catalog being away must never stop serving
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
            if renewed is None:
                log.warning("slot %s (%s) is no longer ours", self.claim.slot_id, self.claim.app_name)
                self.lost = True
                self.changed.set()
                return
            previous, self.claim = self.claim, renewed
            if renewed.target != previous.target:
                self.changed.set()
            await self._report()

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
