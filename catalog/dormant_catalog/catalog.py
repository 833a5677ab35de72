"""Opening the catalog: ``open_database`` (one pool per process) and ``Catalog``, the query functions
by the names the CLI, sidecar and tests call them.

A query is a function of a connection in the module that owns its table (``versions``,
``deployments``, ``aliases``, ``pods``, ``status``, ``audit``, ``rollouts``); new code runs one with
``await db.run(module.fn, ...)``. ``Catalog`` binds each to a name, ``catalog.fn(...)`` = ``await
catalog.db.run(fn, ...)`` (one transaction), so it holds no method per query.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Concatenate, Generic, ParamSpec, TypedDict, TypeVar, Unpack

from . import aliases, audit, compatibility, deployments, listing, pods, status, versions
from .db import Conn, Database
from .listen import SlotListener
from .migrate import migrate as run_migrations
from .rollouts import actions as rollout_actions
from .rollouts import store as rollout_store

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_POD_TTL_S = status.DEFAULT_POD_TTL_S


class _Bound(Generic[P, T]):
    """A query function as an attribute of a ``Catalog``: calling it runs the query in a transaction."""

    def __init__(self, query: Callable[Concatenate[Conn, P], Awaitable[T]]) -> None:
        self._query = query
        self.__doc__ = query.__doc__

    def __get__(
        self, catalog: Catalog, owner: type[Catalog] | None = None
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        db, query = catalog.db, self._query

        async def bound(*args: P.args, **kwargs: P.kwargs) -> T:
            return await db.run(query, *args, **kwargs)

        return bound


class Catalog:
    """Open with ``open_catalog(url)``; close with ``close()`` or ``async with``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def url(self) -> str:
        return self.db.url

    async def close(self) -> None:
        await self.db.close()

    async def __aenter__(self) -> Catalog:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def listen_slots(self) -> SlotListener:
        """A dedicated LISTEN connection on ``dormant_slots``; use with ``async with``."""
        return SlotListener(self.db.url, connect_timeout=self.db.timeout)

    # versions
    register_version = _Bound(versions.register_version)
    publish_version = _Bound(versions.publish_version)
    get_version = _Bound(versions.get_version)
    list_versions = _Bound(versions.list_versions)
    latest_version = _Bound(versions.latest_version)
    set_version_status = _Bound(versions.set_status)
    # interface compatibility: verdicts recorded at publish, approvals of breaking versions
    get_compatibility = _Bound(compatibility.get)
    list_compatibility = _Bound(compatibility.list_records)
    approve_breaking = _Bound(compatibility.approve)
    # deployments, aliases, rollouts
    deploy = _Bound(rollout_actions.deploy)
    get_deployment = _Bound(deployments.get_deployment)
    list_slots = _Bound(deployments.list_slots)
    deployment_status = _Bound(status.deployment_status)
    service_state = _Bound(status.read_service_state)
    list_audit = _Bound(audit.list_audit)
    get_alias = _Bound(aliases.get_alias)
    list_aliases = _Bound(aliases.list_aliases)
    set_alias = _Bound(rollout_actions.set_alias)
    start_rollout = _Bound(rollout_actions.start)
    rollback = _Bound(rollout_actions.rollback)
    promote = _Bound(rollout_actions.promote)
    active_rollout = _Bound(rollout_store.get_active)
    list_rollouts = _Bound(rollout_store.list_rollouts)
    # pods
    register_pod = _Bound(pods.register_pod)
    deregister_pod = _Bound(pods.deregister_pod)
    list_pods = _Bound(pods.list_pods)
    claim_slot = _Bound(pods.claim_slot)
    renew_lease = _Bound(pods.renew_lease)
    report_serving = _Bound(pods.report_serving)
    release_slot = _Bound(pods.release_slot)
    record_start_failure = _Bound(pods.record_start_failure)
    pool = _Bound(listing.pool)


async def open_database(
    url: str,
    *,
    migrate: bool = True,
    min_size: int = 1,
    max_size: int = 4,
    connect_timeout_s: float = 10.0,
) -> Database:
    """Apply pending migrations (unless ``migrate`` is off) and open a pool of ``min_size``..``max_size``
    connections. ``connect_timeout_s`` bounds connecting and waiting for a pooled connection; past it
    calls raise ``CatalogUnavailable``."""
    if migrate:
        await run_migrations(url, connect_timeout=connect_timeout_s)
    db = Database(url, min_size=min_size, max_size=max_size, timeout=connect_timeout_s)
    try:
        await db.open()
    except BaseException:
        await db.close()
        raise
    return db


class OpenOptions(TypedDict, total=False):
    """The options of ``open_database``."""

    migrate: bool
    min_size: int
    max_size: int
    connect_timeout_s: float


async def open_catalog(url: str, **options: Unpack[OpenOptions]) -> Catalog:
    """A ``Catalog`` on ``open_database(url, **options)``."""
    return Catalog(await open_database(url, **options))
