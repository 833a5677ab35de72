"""``GatewayStore``: the async facade over the gateway's tables (and alias writes) on a pooled connection."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType
from typing import Any

from ..db import Database
from ..migrate import migrate as run_migrations
from . import aliases, functions, invocations, triggers
from .records import FunctionRecord, InvocationRecord, TriggerMetrics, TriggerRecord


class GatewayStore:
    """Open with ``open_gateway_store(url)``; close with ``close()`` or ``async with``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def url(self) -> str:
        return self._db.url

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> GatewayStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ functions

    async def create_function(self, **fields: Any) -> FunctionRecord | None:
        """Create (or revive a soft-deleted) function; None when a live one has the name already."""
        async with self._db.transaction() as conn:
            return await functions.create_function(conn, **fields)

    async def get_function(self, name: str, *, include_deleted: bool = False) -> FunctionRecord | None:
        async with self._db.connection() as conn:
            return await functions.get_function(conn, name, include_deleted=include_deleted)

    async def list_functions(
        self,
        *,
        name_contains: str | None = None,
        runtime: str | None = None,
        tag: tuple[str, str] | None = None,
        include_deleted: bool = False,
        after: str | None = None,
        limit: int = 50,
    ) -> list[FunctionRecord]:
        async with self._db.connection() as conn:
            return await functions.list_functions(
                conn,
                name_contains=name_contains,
                runtime=runtime,
                tag=tag,
                include_deleted=include_deleted,
                after=after,
                limit=limit,
            )

    async def update_function(self, name: str, changes: dict[str, Any], *, actor: str) -> FunctionRecord:
        async with self._db.transaction() as conn:
            return await functions.update_function(conn, name, changes, actor=actor)

    async def delete_function(self, name: str, *, actor: str) -> bool:
        async with self._db.transaction() as conn:
            return await functions.delete_function(conn, name, actor=actor)

    async def is_deleted(self, name: str) -> bool:
        async with self._db.connection() as conn:
            return await functions.is_deleted(conn, name)

    # ------------------------------------------------------------------ aliases

    async def set_alias(self, app_name: str, alias: str, weights: dict[int, int], *, actor: str) -> None:
        async with self._db.transaction() as conn:
            await aliases.set_alias(conn, app_name, alias, weights, actor=actor)

    async def alias_exists(self, app_name: str, alias: str) -> bool:
        async with self._db.connection() as conn:
            return await aliases.alias_exists(conn, app_name, alias)

    async def list_aliases(self, app_name: str) -> dict[str, dict[int, int]]:
        async with self._db.connection() as conn:
            return await aliases.list_aliases(conn, app_name)

    async def version_in_use(self, app_name: str, version: int) -> str | None:
        async with self._db.connection() as conn:
            return await aliases.version_in_use(conn, app_name, version)

    # ------------------------------------------------------------------ triggers

    async def create_trigger(
        self,
        *,
        function_name: str,
        kind: str,
        target: str,
        config: dict[str, Any],
        enabled: bool,
        actor: str,
    ) -> TriggerRecord:
        async with self._db.transaction() as conn:
            return await triggers.create_trigger(
                conn,
                function_name=function_name,
                kind=kind,
                target=target,
                config=config,
                enabled=enabled,
                actor=actor,
            )

    async def get_trigger(self, function_name: str, trigger_id: str) -> TriggerRecord | None:
        async with self._db.connection() as conn:
            return await triggers.get_trigger(conn, function_name, trigger_id)

    async def list_triggers(self, function_name: str) -> list[TriggerRecord]:
        async with self._db.connection() as conn:
            return await triggers.list_triggers(conn, function_name)

    async def enabled_triggers(self, kind: str) -> list[TriggerRecord]:
        async with self._db.connection() as conn:
            return await triggers.enabled_triggers(conn, kind)

    async def set_trigger_enabled(
        self, function_name: str, trigger_id: str, enabled: bool, *, actor: str
    ) -> TriggerRecord | None:
        async with self._db.transaction() as conn:
            return await triggers.set_enabled(conn, function_name, trigger_id, enabled, actor=actor)

    async def delete_trigger(self, function_name: str, trigger_id: str, *, actor: str) -> bool:
        async with self._db.transaction() as conn:
            return await triggers.delete_trigger(conn, function_name, trigger_id, actor=actor)

    async def mark_trigger_error(self, trigger_id: str, error: str) -> None:
        async with self._db.connection() as conn:
            await triggers.mark_error(conn, trigger_id, error)

    async def add_trigger_metrics(self, trigger_id: str, **counts: int) -> None:
        async with self._db.connection() as conn:
            await triggers.add_metrics(conn, trigger_id, **counts)

    async def trigger_metrics(self, trigger_ids: list[str]) -> dict[str, TriggerMetrics]:
        async with self._db.connection() as conn:
            return await triggers.get_metrics(conn, trigger_ids)

    # ------------------------------------------------------------------ async invocations

    async def enqueue_invocation(
        self,
        *,
        call_id: str,
        app_name: str,
        function: str,
        version: int | None,
        alias: str | None,
        payload: Any,
        max_attempts: int,
        timeout_s: float,
        created_by: str,
        source: str = "api",
        trigger_id: str | None = None,
        scheduled_at: datetime | None = None,
    ) -> tuple[InvocationRecord, bool]:
        """Persist an invocation unless its callId exists: (the row, whether it is new)."""
        async with self._db.transaction() as conn:
            record, new = await invocations.enqueue(
                conn,
                call_id=call_id,
                app_name=app_name,
                function=function,
                version=version,
                alias=alias,
                payload=payload,
                max_attempts=max_attempts,
                timeout_s=timeout_s,
                created_by=created_by,
                source=source,
                trigger_id=trigger_id,
                scheduled_at=scheduled_at,
            )
            if new and trigger_id is not None:
                await triggers.add_metrics(conn, trigger_id, fired=1)
            return record, new

    async def get_invocation(self, call_id: str) -> InvocationRecord | None:
        async with self._db.connection() as conn:
            return await invocations.get(conn, call_id)

    async def claim_invocations(self, worker: str, *, limit: int, lease_s: float) -> list[InvocationRecord]:
        async with self._db.connection() as conn:
            return await invocations.claim_due(conn, worker, limit=limit, lease_s=lease_s)

    async def invocation_succeeded(self, record: InvocationRecord, worker: str, result: Any) -> bool:
        async with self._db.transaction() as conn:
            done = await invocations.succeed(conn, record.call_id, worker, result)
            if done and record.trigger_id is not None:
                await triggers.add_metrics(conn, record.trigger_id, succeeded=1)
            return done

    async def invocation_failed(
        self, record: InvocationRecord, worker: str, error: dict[str, Any], *, retry_in_s: float | None
    ) -> bool:
        async with self._db.transaction() as conn:
            done = await invocations.fail(conn, record.call_id, worker, error, retry_in_s=retry_in_s)
            if done and record.trigger_id is not None:
                if retry_in_s is None:
                    await triggers.add_metrics(conn, record.trigger_id, failed=1, dead_lettered=1)
                else:
                    await triggers.add_metrics(conn, record.trigger_id, retried=1)
            return done

    async def release_invocation(self, call_id: str, worker: str) -> None:
        async with self._db.connection() as conn:
            await invocations.release(conn, call_id, worker)

    async def list_invocations(
        self,
        *,
        app_name: str | None = None,
        status: str | None = None,
        trigger_id: str | None = None,
        created_by: str | None = None,
        limit: int = 50,
    ) -> list[InvocationRecord]:
        """Newest first; ``created_by`` limits the list to one principal's invocations."""
        async with self._db.connection() as conn:
            return await invocations.list_invocations(
                conn,
                app_name=app_name,
                status=status,
                trigger_id=trigger_id,
                created_by=created_by,
                limit=limit,
            )

    async def invocation_counts(self, app_name: str, *, since_s: float = 3600.0) -> dict[str, int]:
        async with self._db.connection() as conn:
            return await invocations.status_counts(conn, app_name, since_s=since_s)

    async def next_invocation_due_in(self) -> float | None:
        async with self._db.connection() as conn:
            return await invocations.next_due_in(conn)


async def open_gateway_store(
    url: str, *, migrate: bool = True, min_size: int = 1, max_size: int = 8, connect_timeout_s: float = 10.0
) -> GatewayStore:
    """Connect a pool and apply pending migrations (the catalog's and the gateway's)."""
    if migrate:
        await run_migrations(url, connect_timeout=connect_timeout_s)
    db = Database(url, min_size=min_size, max_size=max_size, timeout=connect_timeout_s)
    try:
        await db.open()
    except BaseException:
        await db.close()
        raise
    return GatewayStore(db)
