"""Typed rows the catalog hands out: versions, deployments, slots, claims, pods, aliases, audit."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

VERSION_STATUSES = ("built", "tested", "approved", "deprecated")


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """One immutable registered version of an application."""

    app_name: str
    version: int
    app_layer_image: str
    base_image: str
    platform_interface: str
    interface_hash: str
    schema_definition: dict[str, Any]
    topic_mappings: dict[str, Any]
    created_at: datetime
    created_by: str
    status: str


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """What should run for one application."""

    app_name: str
    target_version: int
    deployment_action: str
    replicas: int
    strategy: str
    updated_at: datetime
    deployed_by: str
    status: str
    status_reason: str | None


@dataclass(frozen=True, slots=True)
class SlotRecord:
    """One replica slot of a deployment; ``pod_id`` is None while nobody holds it."""

    slot_id: int
    app_name: str
    slot_index: int
    version: int
    generation: int
    pod_id: str | None
    lease_expires_at: datetime | None
    claimed_at: datetime | None
    last_error: str | None
    lease_live: bool
    """True when a pod holds the slot and its lease has not expired (by the database clock)."""
    serving_generation: int | None = None
    """The generation its pod has loaded and reported ready; equal to ``generation`` when serving it."""

    @property
    def serving(self) -> bool:
        """A live lease and the slot's current target loaded."""
        return self.lease_live and self.serving_generation == self.generation


@dataclass(frozen=True, slots=True)
class SlotClaim:
    """A slot held by a pod, with everything the pod needs to serve it."""

    slot_id: int
    app_name: str
    slot_index: int
    version: int
    generation: int
    app_layer_image: str
    base_image: str
    platform_interface: str
    interface_hash: str
    live: bool
    """True when this version is the primary of the ``live`` alias (it serves unversioned topics)."""
    lease_expires_at: datetime
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    """The service's environment variables (``environment.py``); a change comes with a new generation."""
    extra_layers: list[str] = field(default_factory=list)
    """Images (``name@sha256:...``) to unpack beside the app layer, in import-path order (``layers.py``):
    the version's dependency layer, then the attached layers; a change comes with a new generation."""
    memory_mb: int = 256
    """The function's memory limit (a change comes with a new generation)."""
    max_concurrency: int | None = None
    """Calls in flight at once for the whole service (None: no limit), shared by its ``replicas``."""
    replicas: int = 1

    @property
    def replica_concurrency(self) -> int | None:
        """This replica's share of ``max_concurrency``: ``ceil(max / replicas)``, at least 1."""
        if self.max_concurrency is None:
            return None
        return max(1, -(-self.max_concurrency // max(1, self.replicas)))

    @property
    def target(self) -> tuple[int, int, bool]:
        """What the runtime must serve; a change means loading a new runtime."""
        return (self.version, self.generation, self.live)


@dataclass(frozen=True, slots=True)
class PodRecord:
    pod_id: str
    base_images: list[str]
    platform_interfaces: list[str]
    registered_at: datetime
    last_seen: datetime
    state: str


@dataclass(frozen=True, slots=True)
class AliasRecord:
    app_name: str
    alias: str
    weights: dict[int, int]
    updated_at: datetime
    updated_by: str

    @property
    def primary(self) -> int | None:
        """The version with the highest positive weight (ties: the newer one)."""
        best = [(weight, version) for version, weight in self.weights.items() if weight > 0]
        return max(best)[1] if best else None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    app_name: str | None
    action: str
    detail: dict[str, Any]
    kind: str = "deployment"
    """deployment, execution, authorization or security (``dormant_catalog.audit.KINDS``)."""


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """Why a deployment is (not) running, for people: ``state`` is running, pending, failed (a pod
    failed to start the version and not every replica serves it) or stopped."""

    app_name: str
    target_version: int | None
    replicas: int
    serving: int
    """Slots held under a live lease."""
    state: str
    reason: str
