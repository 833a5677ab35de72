"""``LeaseKeeper``: renews a claimed slot's lease every ``lease_s / 3`` and reports what changed.

Renewal failures are logged and retried. When no renewal has succeeded and the lease is about to end
(counted from when the last successful renewal, or the claim, was sent: never later than the end the
database recorded), the keeper asks whether the catalog's host can be reached at all (a TCP
connection to it, accepted or refused):

* it cannot (a network partition, or the host is down): the slot counts as lost before its lease
  ends, and the pod stops serving it, so it takes none of the slot's calls by the time another pod
  may take the slot over; it claims a slot again (its own, if nobody took it) once the catalog answers;
* it can (the database is restarting: it refuses connections, or accepts them while it starts up, and
  no pod can take the slot over meanwhile): the pod keeps serving, as through any database restart,
  and asks again every renewal interval.

``changed`` is set when the slot's target moves (new version, generation or live flag) or when the slot
is lost. Setting ``wake`` (the pod's NOTIFY watch on its service) makes it renew at once, so a redeploy
is seen in milliseconds rather than at the next renewal. ``serving`` reports the generation the pod has
loaded, which is what ``deployment_status`` counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict

from dormant_catalog import Catalog, SlotClaim

from .tasks import stop_task

log = logging.getLogger("dormant.sidecar")

LEASE_END_MARGIN = 0.05
"""The part of the lease before its end at which a pod cut off from the catalog stops serving."""
PROBE_MAX_S = 1.0
"""The longest wait for the catalog's host to answer a TCP connection (a fifth of the lease if less)."""
T = TypeVar("T")


def catalog_address(url: str) -> tuple[str, int] | None:
    """The TCP host and port of a catalog URL; None for a Unix socket, several hosts or no host."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return None
    host = str(params.get("hostaddr") or params.get("host") or "")
    port = str(params.get("port") or "5432")
    if not host or "," in host or host.startswith("/") or not port.isdigit():
        return None
    return host, int(port)


async def host_answers(address: tuple[str, int], timeout: float) -> bool:
    """Whether the host at ``address`` answers a TCP connection within ``timeout`` s: accepting it, or
    refusing it (nothing listens there now). No answer at all, or no route to it, is False."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout)
    except ConnectionRefusedError:
        return True
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


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
        reachable: Callable[[], Awaitable[bool]] | None = None,
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
        self._probe_s = min(PROBE_MAX_S, lease_s / 5)
        self._reachable = reachable or self._catalog_host_answers
        """Whether the catalog's host can be reached (the TCP probe; a stand-in in unit tests)."""
        if claimed_at is None:  # when the claim was sent, by the event loop's clock; else about now
            claimed_at = asyncio.get_running_loop().time()
        self.stop_serving_at = claimed_at + self._lease_s * (1 - LEASE_END_MARGIN)
        """When (by the event loop's clock) a pod cut off from the catalog has stopped serving, unless a
        renewal succeeds first: the lease's end as last renewed (or claimed), less a margin."""
        self._check_at = self.stop_serving_at - self._probe_s
        """When, with no renewal by then, the keeper asks whether the catalog's host can be reached."""

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
        overdue = False
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), max(0.0, min(interval, self._check_at - loop.time()))
                )
            self._wake.clear()
            if loop.time() >= self._check_at:  # not renewed, and the lease ends in a moment (or has ended)
                if not await self._reachable():
                    log.warning(
                        "cannot reach the catalog to renew the lease on slot %s (%s) before it ends: the pod"
                        " stops serving it (its calls go to the other replicas; it claims a slot again once"
                        " the catalog answers)",
                        self.claim.slot_id,
                        self.claim.app_name,
                    )
                    self.lost = True
                    self.changed.set()
                    return
                if not overdue:
                    log.warning(
                        "the lease on slot %s was not renewed in time, but the catalog's host answers"
                        " (a database restart?): still serving, will retry",
                        self.claim.slot_id,
                    )
                overdue = True
                self._check_at = loop.time() + interval
            sent = loop.time()
            try:
                renewed = await self._bounded(
                    self._catalog.renew_lease(self._pod_id, self.claim.slot_id, lease_s=self._lease_s),
                    self._check_at - sent,
                )
            except Exception as exc:
                if not failing and not isinstance(exc, TimeoutError):
                    log.warning(
                        "cannot renew the lease on slot %s (still serving, will retry): %s",
                        self.claim.slot_id,
                        exc,
                    )
                failing = True
                continue
            if failing or overdue:
                log.info("lease on slot %s renewed again", self.claim.slot_id)
                failing = overdue = False
            self.stop_serving_at = sent + self._lease_s * (1 - LEASE_END_MARGIN)
            self._check_at = self.stop_serving_at - self._probe_s
            if renewed is None:
                log.warning("slot %s (%s) is no longer ours", self.claim.slot_id, self.claim.app_name)
                self.lost = True
                self.changed.set()
                return
            previous, self.claim = self.claim, renewed
            if renewed.target != previous.target:
                self.changed.set()
            with contextlib.suppress(TimeoutError):  # tried again after the next renewal
                await self._bounded(self._report(), self._check_at - loop.time())

    async def _catalog_host_answers(self) -> bool:
        address = catalog_address(self._catalog.url)
        return address is not None and await host_answers(address, self._probe_s)

    async def _bounded(self, work: Coroutine[Any, Any, T], timeout: float) -> T:
        """``work``'s result, or TimeoutError after ``timeout`` s. A statement on a connection that a
        partition broke silently gets no answer (nor an error) for many minutes, and the driver's own
        cancellation of it may wait seconds more: that is left to finish in the background."""
        task = asyncio.ensure_future(work)
        done, _ = await asyncio.wait({task}, timeout=max(0.0, timeout))
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
