"""Queries for the pod side: registering pods, claiming slots, renewing and releasing leases.

Leases are measured by the database clock (``now()``), never by the pods' clocks.

A pod that cannot start a version records why (``start_failures``, one row per application and
version): each failure doubles the time before any pod may claim a slot of that version again
(``START_RETRY_S``, 2 x, 4 x ... up to ``START_RETRY_CAP_S``), so a version that keeps failing costs a
few attempts a minute, not several a second. A pod serving the version clears the row; so do a
redeploy and a slot pointed anew at the version (see ``0003_start_failures.sql``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from string import Template

from psycopg.rows import class_row

from .aliases import LIVE_ALIAS
from .channels import SLOTS_CHANNEL
from .db import Conn
from .names import check_lease
from .records import PodRecord, SlotClaim

DEFAULT_MEMORY_MB = 256
"""A function's memory limit when nothing set one (the control-plane API's default ``memorySize``)."""
START_RETRY_S = 1.0
"""The wait after a version's first failed start; it doubles with every further failure."""
START_RETRY_CAP_S = 60.0
"""The longest wait between two attempts to start a version that keeps failing."""

# The columns of a SlotClaim, read from the claimed/renewed slot ``k`` and its version ``c``.
_CLAIM_SELECT = (
    "SELECT k.slot_id, k.app_name, k.slot_index, k.version, k.generation, c.app_layer_image, c.base_image,"
    " c.platform_interface, c.interface_hash,"
    f" COALESCE(dormant_alias_primary(k.app_name, '{LIVE_ALIAS}') = k.version, false) AS live,"
    " k.lease_expires_at,"
    " COALESCE((SELECT f.environment FROM gateway_functions AS f WHERE f.name = k.app_name"
    "           AND f.deleted_at IS NULL), '{{}}'::jsonb) AS environment,"
    # The version's extra layers in import-path order (layers.py): its dependency layer, then the
    # function's attached layers in attach order.
    " ARRAY(SELECT x.image FROM ("
    "   SELECT 0 AS pos, d.layer_image AS image FROM version_dependencies AS d"
    "   WHERE d.app_name = k.app_name AND d.version = k.version"
    "   UNION ALL SELECT a.position, v.layer_image FROM function_layers AS a"
    "   JOIN layer_versions AS v ON v.name = a.layer_name AND v.version = a.layer_version"
    "   WHERE a.app_name = k.app_name) AS x ORDER BY x.pos) AS extra_layers,"
    # Limits (gateway_functions; a service without a row has the defaults): the memory in MB, and the
    # calls in flight at once for the whole service, shared by its replica slots.
    " COALESCE((SELECT f.memory_mb FROM gateway_functions AS f WHERE f.name = k.app_name"
    f"           AND f.deleted_at IS NULL), {DEFAULT_MEMORY_MB}) AS memory_mb,"
    " (SELECT (f.concurrency->>'maxConcurrency')::int FROM gateway_functions AS f"
    "  WHERE f.name = k.app_name AND f.deleted_at IS NULL) AS max_concurrency,"
    " (SELECT count(*)::int FROM replica_slots AS r WHERE r.app_name = k.app_name) AS replicas"
    " FROM {source} AS k JOIN application_catalog AS c ON c.app_name = k.app_name AND c.version = k.version"
)

# One statement: pick a free slot (or one whose lease expired, or our own after a restart) of a version
# this pod can run, skipping slots other pods are claiming right now, and take it. Free slots go before
# expired ones, and slots no pod has failed to start go first, so one broken deployment starves no other;
# a version whose last start failed is not claimed before its retry time.
_CLAIM_TEMPLATE = Template(
    "WITH candidate AS ("
    "  SELECT s.slot_id FROM replica_slots AS s"
    "  JOIN application_catalog AS c ON c.app_name = s.app_name AND c.version = s.version"
    "  WHERE $claimable"
    "    AND c.base_image = ANY(%(bases)s::text[])"
    "    AND c.platform_interface = ANY(%(ifaces)s::text[])"
    "    AND NOT EXISTS (SELECT 1 FROM start_failures AS f WHERE f.app_name = s.app_name"
    "                    AND f.version = s.version AND f.retry_at > now())"
    "  ORDER BY $order"
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
_CLAIM = _CLAIM_TEMPLATE.substitute(
    claimable="(s.pod_id IS NULL OR s.lease_expires_at < now() OR s.pod_id = %(pod)s)",
    order="(s.pod_id IS NOT NULL), (s.last_error IS NOT NULL), s.app_name, s.slot_index",
)
# Free slots only, in the same order: the partial index replica_slots_free (0005) holds them in that
# order, so this reads a few index entries where _CLAIM sorts every claimable slot (measured at 20,000
# slots: 1 ms instead of 20-50 ms while a pool fills). ``claim_slot`` tries it first.
_CLAIM_FREE = _CLAIM_TEMPLATE.substitute(
    claimable="s.pod_id IS NULL", order="(s.last_error IS NOT NULL), s.app_name, s.slot_index"
)

_RENEW = (
    "WITH renewed AS ("
    "  UPDATE replica_slots AS s SET lease_expires_at = now() + make_interval(secs => %(lease)s::float8),"
    "    updated_at = now()"
    "  WHERE s.slot_id = %(slot)s AND s.pod_id = %(pod)s"
    "  RETURNING s.slot_id, s.app_name, s.slot_index, s.version, s.generation, s.lease_expires_at"
    "), touched AS ("
    "  UPDATE pods SET last_seen = now(),"
    "    state = CASE WHEN EXISTS (SELECT 1 FROM renewed) THEN 'serving' ELSE 'idle' END"
    "  WHERE pod_id = %(pod)s"
    ") " + _CLAIM_SELECT.format(source="renewed")
)

# Upsert the failure of (app_name, version) taken from the CTE ``source``: the wait doubles per failure.
_FAILED = (
    "  INSERT INTO start_failures AS f (app_name, version, failures, last_error, pod_id, retry_at)"
    "  SELECT app_name, version, 1, %(error)s, %(pod)s, now() + make_interval(secs => %(base)s::float8)"
    "  FROM {source} WHERE %(backoff)s"
    "  ON CONFLICT (app_name, version) DO UPDATE SET failures = f.failures + 1,"
    "    last_error = EXCLUDED.last_error, pod_id = EXCLUDED.pod_id, failed_at = now(),"
    "    retry_at = now() + make_interval(secs => least(%(cap)s::float8,"
    "      %(base)s::float8 * power(2, least(f.failures, 30))))"
    "  RETURNING failures, extract(epoch FROM retry_at - now())::float8 AS retry_in"
)

_RELEASE = (
    "WITH released AS ("
    "  UPDATE replica_slots SET pod_id = NULL, lease_expires_at = NULL, claimed_at = NULL,"
    "    serving_generation = NULL,"
    "    last_error = COALESCE(%(error)s, last_error), updated_at = now()"
    "  WHERE slot_id = %(slot)s AND pod_id = %(pod)s RETURNING app_name, version"
    "), failed AS (" + _FAILED.format(source="released") + "), touched AS ("
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
    params = {
        "pod": pod_id,
        "bases": list(base_images),
        "ifaces": list(platform_interfaces),
        "lease": float(lease_s),
    }
    cur = conn.cursor(row_factory=class_row(SlotClaim))
    await cur.execute(_CLAIM_FREE, params)
    claim = await cur.fetchone()
    if claim is None:  # nothing free: a slot whose lease expired, or our own
        await cur.execute(_CLAIM, params)
        claim = await cur.fetchone()
    return await _with_fresh_live(conn, claim)


async def renew_lease(conn: Conn, pod_id: str, slot_id: int, *, lease_s: float) -> SlotClaim | None:
    """Extend our lease; None when the slot is no longer ours (taken over, released or removed)."""
    check_lease(lease_s)
    cur = conn.cursor(row_factory=class_row(SlotClaim))
    await cur.execute(_RENEW, {"pod": pod_id, "slot": slot_id, "lease": float(lease_s)})
    return await _with_fresh_live(conn, await cur.fetchone())


async def _with_fresh_live(conn: Conn, claim: SlotClaim | None) -> SlotClaim | None:
    """``live`` read again in a statement of its own.

    The claim statement's UPDATE may have waited for a deploy's row lock and then returned the slot's
    new version, while ``dormant_alias_primary`` (STABLE) in that same statement still read the alias
    from the statement's older snapshot: the pod would load the new version as not live, then load it
    again. A new statement takes a new snapshot, which sees the committed deploy."""
    if claim is None:
        return None
    cur = await conn.execute(
        f"SELECT COALESCE(dormant_alias_primary(%s, '{LIVE_ALIAS}') = %s, false)",
        (claim.app_name, claim.version),
    )
    row = await cur.fetchone()
    live = bool(row and row[0])
    return claim if live == claim.live else replace(claim, live=live)


def _failure_params(error: str | None, backoff: bool, base_s: float, cap_s: float) -> dict[str, object]:
    if base_s <= 0 or cap_s < base_s:
        raise ValueError("the start retry wait must be positive and at most its cap")
    return {"error": error, "backoff": error is not None and backoff, "base": base_s, "cap": cap_s}


async def release_slot(
    conn: Conn,
    pod_id: str,
    slot_id: int,
    *,
    error: str | None = None,
    backoff: bool = True,
    retry_s: float = START_RETRY_S,
    retry_cap_s: float = START_RETRY_CAP_S,
) -> bool:
    """Give the slot back if it is still ours (waking other pods); record ``error`` when it failed.

    With an ``error`` (and ``backoff``) the slot's version counts one more failed start and waits
    before any pod claims it again.
    """
    cur = await conn.execute(
        _RELEASE,
        {
            "pod": pod_id,
            "slot": slot_id,
            "channel": SLOTS_CHANNEL,
            **_failure_params(error, backoff, retry_s, retry_cap_s),
        },
    )
    return await cur.fetchone() is not None


async def record_start_failure(
    conn: Conn,
    pod_id: str,
    slot_id: int,
    *,
    error: str,
    retry_s: float = START_RETRY_S,
    retry_cap_s: float = START_RETRY_CAP_S,
) -> float | None:
    """A pod holding ``slot_id`` could not start its current target (it keeps the slot, e.g. serving
    the previous version): record why; the seconds to wait before trying again, None if not its slot."""
    cur = await conn.execute(
        "WITH slot AS ("
        "  UPDATE replica_slots SET last_error = %(error)s, updated_at = now()"
        "  WHERE slot_id = %(slot)s AND pod_id = %(pod)s RETURNING app_name, version"
        "), failed AS (" + _FAILED.format(source="slot") + ") SELECT retry_in FROM failed",
        {"pod": pod_id, "slot": slot_id, **_failure_params(error, True, retry_s, retry_cap_s)},
    )
    row = await cur.fetchone()
    return None if row is None else max(0.0, float(row[0]))


async def report_serving(conn: Conn, pod_id: str, slot_id: int, generation: int) -> bool:
    """Record that ``pod_id`` serves ``generation`` of its slot; False if the slot is not its own.

    Serving the slot's current target clears its failure and the version's failed starts.
    """
    cur = await conn.execute(
        "WITH slot AS ("
        "  UPDATE replica_slots SET serving_generation = %(gen)s, updated_at = now(),"
        "    last_error = CASE WHEN generation = %(gen)s THEN NULL ELSE last_error END"
        "  WHERE slot_id = %(slot)s AND pod_id = %(pod)s RETURNING app_name, version, generation"
        "), cleared AS ("
        "  DELETE FROM start_failures AS f USING slot"
        "  WHERE f.app_name = slot.app_name AND f.version = slot.version AND slot.generation = %(gen)s"
        ") SELECT 1 FROM slot",
        {"gen": generation, "slot": slot_id, "pod": pod_id},
    )
    return await cur.fetchone() is not None
