"""What the health and metrics endpoints read and write in the catalog: the health a pod reports
(``pods.health``, shown by ``dormant pods`` and ``dormant status``), and the figures the controller
exports as Prometheus gauges (functions, versions, the pod pool and the replica slots no pod holds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg.types.json import Jsonb

from .db import Conn
from .status import DEFAULT_POD_TTL_S


@dataclass(frozen=True, slots=True)
class Figures:
    versions: dict[str, int] = field(default_factory=dict)
    """Registered versions per service (services soft-deleted through the API left out)."""
    pods_active: int = 0
    """Pods not stopped and seen within the pod TTL."""
    pods_claimed: int = 0
    """Of those, the pods holding a slot under a live lease."""
    unassigned: dict[str, int] = field(default_factory=dict)
    """Replica slots no pod holds under a live lease, by their version's base image (versions waiting
    out a failed start's back-off left out: more pods would not start them)."""

    @property
    def pods_free(self) -> int:
        return self.pods_active - self.pods_claimed


_VERSIONS = (
    "SELECT c.app_name, count(*) FROM application_catalog AS c"
    " WHERE NOT EXISTS (SELECT 1 FROM gateway_functions AS f WHERE f.name = c.app_name"
    "                   AND f.deleted_at IS NOT NULL)"
    " GROUP BY c.app_name ORDER BY c.app_name"
)
_PODS = (
    "SELECT count(*) FILTER (WHERE alive), count(*) FILTER (WHERE alive AND claimed) FROM ("
    " SELECT p.state <> 'gone' AND p.last_seen > now() - make_interval(secs => %(ttl)s::float8) AS alive,"
    "  EXISTS (SELECT 1 FROM replica_slots AS s WHERE s.pod_id = p.pod_id AND s.lease_expires_at > now())"
    "  AS claimed FROM pods AS p) AS x"
)
_UNASSIGNED = (
    "SELECT c.base_image, count(*) FROM replica_slots AS s"
    " JOIN application_catalog AS c ON c.app_name = s.app_name AND c.version = s.version"
    " WHERE (s.pod_id IS NULL OR s.lease_expires_at IS NULL OR s.lease_expires_at <= now())"
    " AND NOT EXISTS (SELECT 1 FROM start_failures AS f WHERE f.app_name = s.app_name"
    "                 AND f.version = s.version AND f.retry_at > now())"
    " GROUP BY c.base_image ORDER BY c.base_image"
)


async def figures(conn: Conn, *, pod_ttl_s: float = DEFAULT_POD_TTL_S) -> Figures:
    """The catalog's numbers for the controller's gauges, read in one transaction."""
    cur = await conn.execute(_VERSIONS)
    versions = {str(app): int(n) for app, n in await cur.fetchall()}
    cur = await conn.execute(_PODS, {"ttl": float(pod_ttl_s)})
    row = await cur.fetchone()
    active, claimed = (int(row[0]), int(row[1])) if row is not None else (0, 0)
    cur = await conn.execute(_UNASSIGNED)
    unassigned = {str(image): int(n) for image, n in await cur.fetchall()}
    return Figures(versions, active, claimed, unassigned)


async def report_pod_health(conn: Conn, pod_id: str, health: dict[str, Any]) -> None:
    """Record what ``pod_id`` says about its health (a JSON object; see ``dormant_sidecar.observe``)."""
    await conn.execute(
        "UPDATE pods SET health = %s, health_at = now() WHERE pod_id = %s",
        (Jsonb(health), pod_id),
    )


async def ping(conn: Conn) -> None:
    """One round trip (a readiness check)."""
    await conn.execute("SELECT 1")
