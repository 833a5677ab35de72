"""Read-only overviews for people: every service at a glance (``dormant ls``), the versions of one
service (``dormant versions``) and the pod pool (``dormant pods``).

Each is a query function of a connection (``await db.run(listing.services)``). They compose the
owners' reads where one exists (aliases from ``aliases``, slots from ``deployments``, versions from
``versions``) and hold only the SQL no other module has: the per-service summary and the pool join.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .aliases import list_aliases
from .db import Conn
from .deployments import get_deployment, list_slots
from .errors import NotFoundInCatalog
from .records import SlotRecord
from .status import DEFAULT_POD_TTL_S
from .versions import list_versions


@dataclass(frozen=True, slots=True)
class ServiceSummary:
    """One service: its newest version, what is deployed, how many replicas serve, its aliases."""

    name: str
    latest: int
    latest_status: str
    versions: int
    deployed: int | None
    """The deployment's target version; None when the service is not deployed."""
    replicas: int
    """The deployment's replica count (a rollout adds slots for the new version next to them)."""
    slots: int
    """Replica slots, of every version the service has deployed."""
    serving: int
    """Of ``slots``, those whose pod holds a live lease and has loaded the slot's target."""
    aliases: dict[str, dict[int, int]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VersionSummary:
    """One version of a service, with where traffic and replicas point at it."""

    version: int
    status: str
    created_at: datetime
    created_by: str
    image: str
    """``name@sha256:...``: the app layer image."""
    interface_hash: str
    weights: dict[str, int]
    """alias -> this version's weight, for the aliases that give it a positive weight."""
    slots: int
    serving: int

    @property
    def deployed(self) -> bool:
        """Replica slots point at it (serving or starting)."""
        return self.slots > 0


@dataclass(frozen=True, slots=True)
class PoolEntry:
    """A pod of the pool and the slot it holds, if any (a pod holds at most one at a time)."""

    pod_id: str
    state: str
    """serving | starting (claimed, loading the version) | free | gone (stopped) | silent (not seen
    within the pod TTL)"""
    service: str | None
    version: int | None
    slot_index: int | None
    since: datetime
    """When it claimed its slot; for a pod holding none, when it registered."""
    registered_at: datetime
    last_seen: datetime
    base_images: list[str]
    health: dict[str, Any] | None = None
    """What the pod last reported about its health (``dormant_sidecar.observe``): ``ready``, the
    ``failing`` checks and why, its ``runtimes`` by state and their ``restarts`` per service and
    version; None before it reported any."""

    @property
    def alive(self) -> bool:
        return self.state not in ("gone", "silent")


_SERVICES = (
    "SELECT c.app_name, max(c.version), (array_agg(c.status ORDER BY c.version DESC))[1], count(*),"
    " d.target_version, COALESCE(d.replicas, 0)"
    " FROM application_catalog AS c LEFT JOIN application_deployments AS d ON d.app_name = c.app_name"
    " GROUP BY c.app_name, d.target_version, d.replicas ORDER BY c.app_name"
)

# Every pod with the slot it holds under a live lease (by the database clock), if any.
_POOL = (
    "SELECT p.pod_id, p.state, p.registered_at, p.last_seen, p.base_images, p.health,"
    " p.last_seen > now() - make_interval(secs => %(ttl)s::float8) AS recent,"
    " s.app_name, s.version, s.slot_index, s.claimed_at, s.serving_generation = s.generation AS serving"
    " FROM pods AS p LEFT JOIN replica_slots AS s ON s.pod_id = p.pod_id AND s.lease_expires_at > now()"
    " ORDER BY p.pod_id, s.app_name, s.slot_index"
)


def _serving(slots: list[SlotRecord], version: int | None = None) -> int:
    return sum(1 for s in slots if s.serving and (version is None or s.version == version))


async def services(conn: Conn) -> list[ServiceSummary]:
    """Every service that has a registered version, by name."""
    cur = await conn.execute(_SERVICES)
    rows = await cur.fetchall()
    out: list[ServiceSummary] = []
    for name, latest, status, count, deployed, replicas in rows:
        slots = await list_slots(conn, name) if deployed is not None else []
        out.append(
            ServiceSummary(
                name=str(name),
                latest=int(latest),
                latest_status=str(status),
                versions=int(count),
                deployed=None if deployed is None else int(deployed),
                replicas=int(replicas),
                slots=len(slots),
                serving=_serving(slots),
                aliases=await list_aliases(conn, name),
            )
        )
    return out


async def service_versions(conn: Conn, app_name: str) -> list[VersionSummary]:
    """The versions of ``app_name``, oldest first; ``NotFoundInCatalog`` when it has none."""
    versions = await list_versions(conn, app_name)
    if not versions:
        raise NotFoundInCatalog(f"no service named {app_name!r}")
    aliases = await list_aliases(conn, app_name)
    slots = await list_slots(conn, app_name) if await get_deployment(conn, app_name) else []
    return [
        VersionSummary(
            version=v.version,
            status=v.status,
            created_at=v.created_at,
            created_by=v.created_by,
            image=v.app_layer_image,
            interface_hash=v.interface_hash,
            weights={a: w[v.version] for a, w in aliases.items() if w.get(v.version, 0) > 0},
            slots=sum(1 for s in slots if s.version == v.version),
            serving=_serving(slots, v.version),
        )
        for v in versions
    ]


async def pool(conn: Conn, *, pod_ttl_s: float = DEFAULT_POD_TTL_S) -> list[PoolEntry]:
    """Every pod the catalog has seen, by id, with its slot; see ``PoolEntry.state``."""
    cur = await conn.execute(_POOL, {"ttl": float(pod_ttl_s)})
    out: list[PoolEntry] = []
    for (
        pod,
        state,
        registered,
        seen,
        bases,
        health,
        recent,
        app,
        version,
        index,
        claimed,
        serving,
    ) in await cur.fetchall():
        if state == "gone":
            shown = "gone"
        elif not recent:
            shown = "silent"
        elif app is None:
            shown = "free"
        else:
            shown = "serving" if serving else "starting"
        out.append(
            PoolEntry(
                pod_id=str(pod),
                state=shown,
                service=None if app is None else str(app),
                version=None if version is None else int(version),
                slot_index=None if index is None else int(index),
                since=claimed if claimed is not None else registered,
                registered_at=registered,
                last_seen=seen,
                base_images=list(bases),
                health=health if isinstance(health, dict) else None,
            )
        )
    return out
