"""What a runtime hands its handlers: ``ctx.data``, ``ctx.authorizer`` and ``ctx.messaging``, each bound to
the caller of the call being served (the seed's ``CreateDataStore(UserContext)`` and so on).

- The DataStore and the Authorizer are ``dormant_runtime.datastore``'s, on the call's own transaction
  (``Context._transaction``, from the catalog's database), so their writes commit with the call's stored
  answer, exactly once per callId, and roll back with an error answer. Their statements run as the
  ``dormant_fn`` role under row-level security from the caller's claims. The schema is made (or brought
  up to date) once when the runtime starts (``prepare``); a runtime whose database user may not do that
  answers DataStore use with ``Unavailable`` and serves everything else.
- Messaging is ``dormant.messaging.Messaging`` over one ``dormant.Client`` per runtime, connected when
  the runtime starts (in the background: it keeps trying while the broker is unreachable, and calls
  wait for it within their own timeouts), and one ``Resiliency`` (retries and circuit breakers are per
  runtime, not per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import psycopg

from dormant.client import Client
from dormant.context import Context
from dormant.errors import DormantError, Forbidden, Unauthenticated, Unavailable
from dormant.messaging import Messaging, Resiliency
from dormant.migrations import Migration

from .datastore import PostgresAuthorizer, PostgresDataStore, apply_migrations, ensure_schema

log = logging.getLogger("dormant.runtime.platform")

CONNECT_RETRY_S = 1.0


class RuntimePlatform:
    """The platform interfaces of one runtime process."""

    def __init__(
        self, *, catalog_url: str | None, client: Client, resiliency: Resiliency | None = None
    ) -> None:
        self.catalog_url = catalog_url
        self.client = client
        self.resiliency = resiliency or Resiliency()
        self._datastore_problem: str | None = None if catalog_url else "this runtime has no database"
        self._connecting: asyncio.Task[None] | None = None

    async def prepare(self, service: str, migrations: Sequence[Migration] = ()) -> None:
        """Start connecting the messaging client; create or update the DataStore's schema and apply the
        service's pending collection migrations (idempotent, recorded, safe from many runtimes at once:
        a version's migrations run once, by whichever of its runtimes starts first)."""
        self._connecting = asyncio.ensure_future(self._connect())
        await asyncio.sleep(0)  # the client's connection task exists from here on
        if self.catalog_url is None:
            return
        try:
            async with await psycopg.AsyncConnection.connect(self.catalog_url, autocommit=True) as conn:
                await ensure_schema(conn)
                if migrations:
                    ran = await apply_migrations(conn, service, migrations)
                    for step in ran:
                        log.info(
                            "collection migration %d (%s) %s",
                            step.migration.version,
                            step.migration.name,
                            step.direction,
                        )
        except psycopg.Error as exc:
            self._datastore_problem = f"the DataStore's schema could not be prepared ({type(exc).__name__})"
            log.warning("%s: %s", self._datastore_problem, exc)
        except DormantError as exc:  # declared migrations that contradict the recorded ones
            self._datastore_problem = f"the service's collection migrations were refused: {exc.message}"
            log.error("%s", self._datastore_problem)

    async def close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connecting
        await self.client.close()

    def _check_datastore(self) -> None:
        if self._datastore_problem is not None:
            raise Unavailable(f"the DataStore is unavailable: {self._datastore_problem}")

    def datastore(self, ctx: Context) -> PostgresDataStore:
        self._check_datastore()
        return PostgresDataStore(ctx._transaction, user=ctx.user, service=ctx.service, call_id=ctx.call_id)

    def authorizer(self, ctx: Context) -> PostgresAuthorizer:
        self._check_datastore()
        return PostgresAuthorizer(ctx._transaction, user=ctx.user, service=ctx.service, call_id=ctx.call_id)

    def messaging(self, ctx: Context) -> Messaging:
        return Messaging(
            self.client, ctx.user, ctx.call_id, resiliency=self.resiliency, deadline=ctx.deadline
        )

    async def _connect(self) -> None:
        while True:
            try:
                await self.client.connect()
                return
            except Unavailable as exc:
                log.warning("messaging: the broker is unreachable (%s); retrying", exc)
                await asyncio.sleep(CONNECT_RETRY_S)
            except (Unauthenticated, Forbidden) as exc:  # no retry can change the broker's verdict
                log.error("messaging: the broker refused this runtime's client: %s", exc)
                return


def outgoing_client(broker_url: str, client_id: str) -> Client:
    """The runtime's client for calls and events its handlers make (each call carries its caller's
    token, set per call by ``Messaging``; the client itself sends none)."""
    return Client(broker_url, client_id=f"{client_id}-out", authorization="")
