"""``Catalog``: the async facade over the catalog database that every component uses.

Each method runs on a pooled connection (psycopg_pool) and delegates its SQL to the module that
owns the table: ``versions``, ``deployments``, ``pods``, ``status``, ``audit``, ``listen``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any

from . import audit, deployments, pods, status, versions
from .db import Database
from .listen import SlotListener
from .migrate import migrate as run_migrations
from .records import (
    AliasRecord,
    AuditRecord,
    DeploymentRecord,
    DeploymentStatus,
    PodRecord,
    SlotClaim,
    SlotRecord,
    VersionRecord,
)
from .rollouts import actions as rollout_actions
from .rollouts import store as rollout_store
from .rollouts.records import RolloutRecord

DEFAULT_POD_TTL_S = 30.0


class Catalog:
    """Open with ``open_catalog(url)``; close with ``close()`` or ``async with``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def url(self) -> str:
        return self._db.url

    async def close(self) -> None:
        await self._db.close()

    async def __aenter__(self) -> Catalog:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ------------------------------------------------------------------ versions

    async def register_version(
        self,
        *,
        app_name: str,
        app_layer_image: str,
        base_image: str,
        interface_hash: str,
        schema_definition: dict[str, Any],
        topic_mappings: dict[str, Any],
        platform_interface: str = "dormant/1",
        actor: str = "cli",
    ) -> int:
        """Register the next version of ``app_name`` (1, 2, ... race-safe); return its number."""
        async with self._db.transaction() as conn:
            return await versions.register_version(
                conn,
                app_name=app_name,
                app_layer_image=app_layer_image,
                base_image=base_image,
                interface_hash=interface_hash,
                schema_definition=schema_definition,
                topic_mappings=topic_mappings,
                platform_interface=platform_interface,
                actor=actor,
            )

    async def get_version(self, app_name: str, version: int) -> VersionRecord | None:
        async with self._db.connection() as conn:
            return await versions.get_version(conn, app_name, version)

    async def list_versions(self, app_name: str) -> list[VersionRecord]:
        async with self._db.connection() as conn:
            return await versions.list_versions(conn, app_name)

    async def latest_version(self, app_name: str) -> int | None:
        async with self._db.connection() as conn:
            return await versions.latest_version(conn, app_name)

    async def set_version_status(
        self, app_name: str, version: int, status: str, *, actor: str = "cli"
    ) -> VersionRecord:
        """built | tested | approved | deprecated: the one thing about a version that may change."""
        async with self._db.transaction() as conn:
            return await versions.set_status(conn, app_name, version, status, actor=actor)

    # ------------------------------------------------------------------ deployments

    async def deploy(
        self, app_name: str, *, version: int | None = None, replicas: int = 1, actor: str = "cli"
    ) -> DeploymentRecord:
        """All-at-once: every slot serves ``version`` (default: the latest), ``live`` = 100 %."""
        async with self._db.transaction() as conn:
            await rollout_actions.supersede(conn, app_name, actor=actor)
            return await deployments.deploy(conn, app_name, version=version, replicas=replicas, actor=actor)

    async def get_deployment(self, app_name: str) -> DeploymentRecord | None:
        async with self._db.connection() as conn:
            return await deployments.get_deployment(conn, app_name)

    async def list_slots(self, app_name: str) -> list[SlotRecord]:
        async with self._db.connection() as conn:
            return await deployments.list_slots(conn, app_name)

    async def get_alias(self, app_name: str, alias: str = "live") -> AliasRecord | None:
        async with self._db.connection() as conn:
            return await deployments.get_alias(conn, app_name, alias)

    async def deployment_status(
        self, app_name: str, *, pod_ttl_s: float = DEFAULT_POD_TTL_S
    ) -> DeploymentStatus:
        """Whether the deployment runs, and if not why (pods seen within ``pod_ttl_s`` count)."""
        async with self._db.transaction() as conn:
            return await status.deployment_status(conn, app_name, pod_ttl_s=pod_ttl_s)

    async def service_state(
        self, app_name: str, *, pod_ttl_s: float = DEFAULT_POD_TTL_S
    ) -> dict[str, Any] | None:
        """What the controller publishes on ``mesh/services/{app_name}``; None for no such service."""
        async with self._db.transaction() as conn:
            states = await status.service_states(conn, app_name, pod_ttl_s=pod_ttl_s)
        return states.get(app_name)

    async def list_audit(self, app_name: str | None = None, *, limit: int = 100) -> list[AuditRecord]:
        async with self._db.connection() as conn:
            return await audit.list_audit(conn, app_name, limit=limit)

    # ------------------------------------------------------------------ rollouts and aliases

    async def start_rollout(
        self, app_name: str, version: int, config: dict[str, Any], *, actor: str = "cli"
    ) -> RolloutRecord:
        """Begin a canary / linear / blue-green / rolling / A/B rollout (the controller drives it)."""
        async with self._db.transaction() as conn:
            return await rollout_actions.start(conn, app_name, version, config, actor=actor)

    async def rollback(self, app_name: str, *, actor: str = "cli") -> str:
        """Traffic back to the previous version at once; a sentence saying what happened."""
        async with self._db.transaction() as conn:
            return await rollout_actions.rollback(conn, app_name, actor=actor)

    async def promote(self, app_name: str, *, actor: str = "cli") -> str:
        async with self._db.transaction() as conn:
            return await rollout_actions.promote(conn, app_name, actor=actor)

    async def set_alias(
        self, app_name: str, alias: str, weights: dict[int, int], *, actor: str = "cli", force: bool = False
    ) -> None:
        """Point ``alias`` at {version: weight}; ``live`` needs approved versions unless ``force``."""
        async with self._db.transaction() as conn:
            await rollout_actions.set_alias(conn, app_name, alias, weights, actor=actor, force=force)

    async def list_aliases(self, app_name: str) -> dict[str, dict[int, int]]:
        async with self._db.connection() as conn:
            return await rollout_store.aliases(conn, app_name)

    async def active_rollout(self, app_name: str) -> RolloutRecord | None:
        async with self._db.connection() as conn:
            return await rollout_store.get_active(conn, app_name)

    async def list_rollouts(self, app_name: str, *, limit: int = 20) -> list[RolloutRecord]:
        """Newest first."""
        async with self._db.connection() as conn:
            return await rollout_store.list_rollouts(conn, app_name, limit=limit)

    # ------------------------------------------------------------------ pods

    async def register_pod(
        self, pod_id: str, base_images: Sequence[str], platform_interfaces: Sequence[str]
    ) -> None:
        async with self._db.connection() as conn:
            await pods.register_pod(conn, pod_id, base_images, platform_interfaces)

    async def deregister_pod(self, pod_id: str) -> None:
        async with self._db.connection() as conn:
            await pods.deregister_pod(conn, pod_id)

    async def list_pods(self) -> list[PodRecord]:
        async with self._db.connection() as conn:
            return await pods.list_pods(conn)

    async def claim_slot(
        self,
        pod_id: str,
        *,
        base_images: Sequence[str],
        platform_interfaces: Sequence[str],
        lease_s: float,
    ) -> SlotClaim | None:
        """Take one free (or expired) slot this pod can run, in one statement; None if there is none."""
        async with self._db.connection() as conn:
            return await pods.claim_slot(
                conn,
                pod_id,
                base_images=base_images,
                platform_interfaces=platform_interfaces,
                lease_s=lease_s,
            )

    async def renew_lease(self, pod_id: str, slot_id: int, *, lease_s: float) -> SlotClaim | None:
        """Extend the lease and return the slot's current target; None if the slot is no longer ours."""
        async with self._db.connection() as conn:
            return await pods.renew_lease(conn, pod_id, slot_id, lease_s=lease_s)

    async def report_serving(self, pod_id: str, slot_id: int, generation: int) -> bool:
        """The pod has loaded ``generation`` of its slot and is serving it; False if not its slot."""
        async with self._db.connection() as conn:
            return await pods.report_serving(conn, pod_id, slot_id, generation)

    async def release_slot(
        self, pod_id: str, slot_id: int, *, error: str | None = None, backoff: bool = True
    ) -> bool:
        """Give the slot back if still ours (``error`` says why it could not be served); True if released.

        With an ``error`` the version counts a failed start and no pod claims it again for a while
        (doubling per failure); ``backoff=False`` records the error without that (this pod could not
        run it, another may).
        """
        async with self._db.connection() as conn:
            return await pods.release_slot(conn, pod_id, slot_id, error=error, backoff=backoff)

    async def record_start_failure(self, pod_id: str, slot_id: int, *, error: str) -> float | None:
        """The pod keeps its slot but could not start the slot's target: record why; the seconds to
        wait before trying again (doubling per failure), None if the slot is not its own."""
        async with self._db.connection() as conn:
            return await pods.record_start_failure(conn, pod_id, slot_id, error=error)

    def listen_slots(self) -> SlotListener:
        """A dedicated LISTEN connection on ``dormant_slots``; use with ``async with``."""
        return SlotListener(self._db.url, connect_timeout=self._db.timeout)


async def open_catalog(
    url: str,
    *,
    migrate: bool = True,
    min_size: int = 1,
    max_size: int = 4,
    connect_timeout_s: float = 10.0,
) -> Catalog:
    """Connect (a pool of ``min_size``..``max_size`` connections) and apply pending migrations.

    ``connect_timeout_s`` bounds connecting and waiting for a pooled connection; past it calls raise
    ``CatalogUnavailable``.
    """
    if migrate:
        await run_migrations(url, connect_timeout=connect_timeout_s)
    db = Database(url, min_size=min_size, max_size=max_size, timeout=connect_timeout_s)
    try:
        await db.open()
    except BaseException:
        await db.close()
        raise
    return Catalog(db)
