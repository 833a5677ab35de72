"""The async-invocation worker: claims due invocations from Postgres and calls them.

Every replica runs one; ``FOR UPDATE SKIP LOCKED`` shares the rows. Attempt *n* of invocation *c*
uses the callId ``c.n``: a worker that died mid-call leaves the attempt uncounted, and the replica
that claims it after the lease repeats the same callId, which the runtime de-duplicates. A failed
attempt is retried with exponential backoff; a permanent error, or the last attempt failing, moves
the invocation to the dead letters (status ``dead``).

Each call carries the gateway's own token, with the subject it is for in a header (``auth/acting.py``):
the row never holds a caller's token, and a token kept for later could expire before the call runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from dormant import _tracing, callid
from dormant.errors import DormantError, SystemError
from dormant_catalog import CatalogError
from dormant_catalog.gateway import InvocationRecord
from dormant_catalog.gateway import invocations as invocation_sql

from ..auth.acting import invocation_headers
from ..state import GatewayState
from ..targets import explain_unavailable, route
from .backoff import backoff_s, retryable

log = logging.getLogger("dormant.gateway.async")

POLL_S = 0.25
LEASE_MARGIN_S = 10.0


class AsyncInvocationWorker:
    def __init__(self, gateway: GatewayState, worker_id: str, *, concurrency: int = 64) -> None:
        self._gateway = gateway
        self._worker_id = worker_id
        self._concurrency = concurrency
        self._running: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        gateway = self._gateway
        settings = gateway.config.async_settings
        try:
            while True:
                gateway.invocations_ready.clear()
                free = self._concurrency - len(self._running)
                claimed: list[InvocationRecord] = []
                if free > 0:
                    try:
                        claimed = await gateway.db.run(
                            invocation_sql.claim_due,
                            self._worker_id,
                            limit=min(free, settings.batch),
                            lease_s=LEASE_MARGIN_S,
                        )
                    except CatalogError as exc:
                        log.warning("cannot claim async invocations: %s", exc)
                for record in claimed:
                    task = asyncio.create_task(self._attempt(record))
                    self._running.add(task)
                    task.add_done_callback(self._running.discard)
                if claimed and len(claimed) == min(free, settings.batch):
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gateway.invocations_ready.wait(), POLL_S)
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)

    async def _attempt(self, record: InvocationRecord) -> None:
        gateway = self._gateway
        settings = gateway.config.async_settings
        try:
            payload: dict[str, Any] = record.payload if isinstance(record.payload, dict) else {}
            call_id = callid.attempt(record.call_id, record.attempts + 1)
            stored = payload.get("headers")
            headers = invocation_headers(
                stored if isinstance(stored, dict) else {},
                created_by=record.created_by,
                trigger_id=record.trigger_id,
            )
            try:
                # The gateway's own token (no caller's token is stored, and one would have expired);
                # whom the call is for travels in a header (auth/acting.py).
                authorization = await gateway.own_authorization()
            except DormantError as exc:
                await self._failed(record, exc, settings.backoff_base_s, settings.backoff_max_s)
                return
            # A cron tick's call is a timer's; an invoke-async's continues its HTTP request's trace.
            trigger = "timer" if record.trigger_id is not None else "http"
            try:
                with _tracing.invocation(
                    record.app_name, record.function, trigger=trigger, headers=headers, call_id=call_id
                ):
                    version = await route(
                        gateway, record.app_name, alias=record.alias, version=record.version
                    )
                    result = await gateway.client.call(
                        record.app_name,
                        record.function,
                        payload.get("params"),
                        timeout=record.timeout_s,
                        version=version,
                        call_id=call_id,
                        headers=headers,
                        authorization=authorization,
                    )
            except DormantError as exc:
                # A function or version that does not exist is NotFound: permanent, not retried.
                explained = await explain_unavailable(
                    gateway, record.app_name, record.function, record.version, exc
                )
                await self._failed(record, explained, settings.backoff_base_s, settings.backoff_max_s)
                return
            except CatalogError as exc:
                await self._failed(
                    record, SystemError(f"catalog: {exc}"), settings.backoff_base_s, settings.backoff_max_s
                )
                return
            await gateway.db.run(invocation_sql.succeed, record, self._worker_id, result)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(gateway.db.run(invocation_sql.release, record.call_id, self._worker_id))
            raise
        except Exception:
            log.exception("async invocation %s: unexpected failure", record.call_id)

    async def _failed(
        self, record: InvocationRecord, error: DormantError, base_s: float, max_s: float
    ) -> None:
        attempts = record.attempts + 1
        retry_in: float | None = None
        if retryable(error) and attempts < record.max_attempts:
            retry_in = backoff_s(attempts, base_s=base_s, max_s=max_s)
        await self._gateway.db.run(
            invocation_sql.fail,
            record,
            self._worker_id,
            {**error.to_payload(), "attempt": attempts},
            retry_in_s=retry_in,
        )
        if retry_in is None:
            log.warning(
                "async invocation %s dead after %d attempt(s): %s", record.call_id, attempts, error.type
            )
