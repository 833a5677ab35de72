"""Queries for the pod side: registering pods, claiming slots, renewing and releasing leases.

Leases are measured by the database clock (``now()``), never by the pods' clocks.
"""

from __future__ import annotations

from collections.abc import Sequence

from psycopg.rows import class_row

from .db import Conn
from .deployments import SLOTS_CHANNEL
from .names import check_lease
from .records import PodRecord, SlotClaim

# The columns of a SlotClaim, read from the claimed/renewed slot ``k`` and its version ``c``.
_CLAIM_SELECT = (
    "SELECT k.slot_id, k.app_name, k.slot_index, k.version, k.generation, c.app_layer_image, c.base_image,"
    " c.platform_interface, c.interface_hash,"
    " COALESCE(dormant_alias_primary(k.app_name, 'live') = k.version, false) AS live, k.lease_expires_at"
    " FROM {source} AS k JOIN application_catalog AS c ON c.app_name = k.app_name AND c.version = k.version"
)

# One statement: pick a free slot (or one whose lease expired, or our own after a restart) of a version
# this pod can run, skipping slots other pods are claiming right now, and take it. Free slots go before
# expired ones, and slots no pod has failed to start go first, so one broken deployment starves no other.
_CLAIM = (
    "WITH candidate AS ("
    "  SELECT s.slot_id FROM replica_slots AS s"
    "  JOIN application_catalog AS c ON c.app_name = s.app_name AND c.version = s.version"
    "  WHERE (s.pod_id IS NULL OR s.lease_expires_at < now() OR s.pod_id = %(pod)s)"
    "    AND c.base_image = ANY(%(bases)s::text[])"
    "    AND c.platform_interface = ANY(%(ifaces)s::text[])"
    "  ORDER BY (s.pod_id IS NOT NULL), (s.last_error IS NOT NULL), s.app_name, s.slot_index"
    "  LIMIT 1 FOR UPDATE OF s SKIP LOCKED"
    "), claimed AS ("
    "  UPDATE replica_slots AS s SET pod_id = %(pod)s,"
    "    lease_expires_at = now() + make_interval(secs => %(lease)s::float8),"
    "    claimed_at = now(), serving_generation = NULL, updated_at = now()"
    "  FROM candidate WHERE s.slot_id = candidate.slot_id"
    "  RETURNING s.slot_id, s.app_name, s.slot_index, s.version, s.generation, s.lease_expires_at"
    "), touched AS ("
    "  UPDATE pods SET last_seen = now(),"
    "    state = CASE WHEN EXISTS (SELECT 1 FROM claimed) THEN 'serving' ELSE 'idle' END"
    "  WHERE pod_id = %(pod)s"
    ") " + _CLAIM_SELECT.format(source="claimed")
)

_RENEW = (
    "WITH renewed AS ("
    "  UPDATE replica_slots AS s SET lease_expires_at = now() + make_interval(secs => %(lease)s::float8),"
    "    last_error = NULL, updated_at = now()"
    "  WHERE s.slot_id = %(slot)s AND s.pod_id = %(pod)s"
    "  RETURNING s.slot_id, s.app_name, s.slot_index, s.version, s.generation, s.lease_expires_at"
    "), touched AS ("
    "  UPDATE pods SET last_seen = now(),"
    "    state = CASE WHEN EXISTS (SELECT 1 FROM renewed) THEN 'serving' ELSE 'idle' END"
    "  WHERE pod_id = %(pod)s"
    ") " + _CLAIM_SELECT.format(source="renewed")
)

_RELEASE = (
    "WITH released AS ("
    "  UPDATE replica_slots SET pod_id = NULL, lease_expires_at = NULL, claimed_at = NULL,"
    "    serving_generation = NULL,"
    "    last_error = COALESCE(%(error)s, last_error), updated_at = now()"
    "  WHERE slot_id = %(slot)s AND pod_id = %(pod)s RETURNING app_name"
    "), touched AS ("
    "  UPDATE pods SET last_seen = now(), state = 'idle' WHERE pod_id = %(pod)s"
    ") SELECT pg_notify(%(channel)s, app_name) FROM released"
)


async def register_pod(
    conn: Conn, pod_id: str, base_images: Sequence[str], platform_interfaces: Sequence[str]
) -> None:
    await conn.execute(
        "INSERT INTO pods (pod_id, base_images, platform_interfaces) VALUES (%s, %s, %s)"
        " ON CONFLICT (pod_id) DO UPDATE SET base_images = EXCLUDED.base_images,"
        " platform_interfaces = EXCLUDED.platform_interfaces, last_seen = now(), state = 'idle'",
        (pod_id, list(base_images), list(platform_interfaces)),
    )


async def deregister_pod(conn: Conn, pod_id: str) -> None:
    """Mark a pod as gone (it stopped on purpose); it no longer counts as able to serve."""
    await conn.execute("UPDATE pods SET state = 'gone', last_seen = now() WHERE pod_id = %s", (pod_id,))


async def list_pods(conn: Conn) -> list[PodRecord]:
    cur = conn.cursor(row_factory=class_row(PodRecord))
    await cur.execute(
        "SELECT pod_id, base_images, platform_interfaces, registered_at, last_seen, state FROM pods"
        " ORDER BY pod_id"
    )
    return await cur.fetchall()


async def claim_slot(
    conn: Conn,
    pod_id: str,
    *,
    base_images: Sequence[str],
    platform_interfaces: Sequence[str],
    lease_s: float,
) -> SlotClaim | None:
    check_lease(lease_s)
    cur = conn.cursor(row_factory=class_row(SlotClaim))
    await cur.execute(
        _CLAIM,
        {
            "pod": pod_id,
            "bases": list(base_images),
            "ifaces": list(platform_interfaces),
            "lease": float(lease_s),
        },
    )
    return await cur.fetchone()


async def renew_lease(conn: Conn, pod_id: str, slot_id: int, *, lease_s: float) -> SlotClaim | None:
    """Extend our lease; None when the slot is no longer ours (taken over, released or removed)."""
    check_lease(lease_s)
    cur = conn.cursor(row_factory=class_row(SlotClaim))
    await cur.execute(_RENEW, {"pod": pod_id, "slot": slot_id, "lease": float(lease_s)})
    return await cur.fetchone()


async def release_slot(conn: Conn, pod_id: str, slot_id: int, *, error: str | None) -> bool:
    """Give the slot back if it is still ours (waking other pods); record ``error`` when it failed."""
    cur = await conn.execute(
        _RELEASE, {"pod": pod_id, "slot": slot_id, "error": error, "channel": SLOTS_CHANNEL}
    )
    return await cur.fetchone() is not None


async def report_serving(conn: Conn, pod_id: str, slot_id: int, generation: int) -> bool:
    """Record that ``pod_id`` serves ``generation`` of its slot; False if the slot is not its own."""
    cur = await conn.execute(
        "UPDATE replica_slots SET serving_generation = %s, updated_at = now()"
        " WHERE slot_id = %s AND pod_id = %s RETURNING slot_id",
        (generation, slot_id, pod_id),
    )
    return await cur.fetchone() is not None
