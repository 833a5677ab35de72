"""Whether a service runs and, if not, why: ``deployment_status`` (for ``dormant status`` and
``dormant deploy``) and ``service_states``, the per-service state the controller publishes retained to
``mesh/services/{svc}`` so that a caller whose call nobody received can be told why.

A service state (JSON) says which versions exist, the functions of each, and per version whether it
is ``serving``, ``starting``, ``failed`` (a pod could not start it: the error), ``not-deployed`` or
``stopped``; ``state``/``reason`` at the top describe what an unversioned call reaches (the ``live``
alias's primary version). ``dormant.routing.explain_unserved`` reads it on the caller's side.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .aliases import LIVE_ALIAS
from .db import Conn
from .deployments import get_deployment, list_slots
from .errors import NotFoundInCatalog
from .records import DeploymentStatus
from .versions import get_version, latest_version

DEFAULT_POD_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class StartFailure:
    """The failed starts of one version, recorded by pods (``start_failures``)."""

    failures: int
    error: str
    pod_id: str | None
    retry_at: datetime
    retry_in_s: float


async def _live_pods(conn: Conn, pod_ttl_s: float) -> list[tuple[list[str], list[str], str]]:
    """(base_images, platform_interfaces, state) of pods seen within ``pod_ttl_s`` that did not stop."""
    cur = await conn.execute(
        "SELECT base_images, platform_interfaces, state FROM pods"
        " WHERE state <> 'gone' AND last_seen > now() - make_interval(secs => %s::float8)",
        (float(pod_ttl_s),),
    )
    return [(list(row[0]), list(row[1]), str(row[2])) for row in await cur.fetchall()]


async def _start_failures(conn: Conn, app_name: str | None = None) -> dict[tuple[str, int], StartFailure]:
    cur = await conn.execute(
        "SELECT app_name, version, failures, last_error, pod_id, retry_at,"
        " greatest(0, extract(epoch FROM retry_at - now()))::float8 FROM start_failures"
        + ("" if app_name is None else " WHERE app_name = %s"),
        () if app_name is None else (app_name,),
    )
    return {
        (str(r[0]), int(r[1])): StartFailure(int(r[2]), str(r[3]), r[4], r[5], float(r[6]))
        for r in await cur.fetchall()
    }


def _pending_reason(
    base_image: str,
    platform_interface: str,
    pods: list[tuple[list[str], list[str], str]],
    missing: int,
    total: int,
) -> str:
    """Why ``missing`` of ``total`` slots of a version have no pod serving them."""
    with_base = [pod for pod in pods if base_image in pod[0]]
    able = [pod for pod in with_base if platform_interface in pod[1]]
    if not with_base:
        return f"no registered pod provides base runtime {base_image}"
    if not able:
        return (
            f"no registered pod provides platform interface {platform_interface}"
            f" with base runtime {base_image}"
        )
    if not any(pod[2] == "idle" for pod in able):
        return f"waiting for a pod: all {len(able)} pods that can run {base_image} are busy"
    return f"waiting for a pod to claim {missing} of {total} slots"


def failure_text(version: int, failure: StartFailure) -> str:
    """``failed to start v2 (3 attempts): <the error>`` (no clock in it: it is published)."""
    attempts = "1 attempt" if failure.failures == 1 else f"{failure.failures} attempts"
    return f"failed to start v{version} ({attempts}): {failure.error}"


async def deployment_status(
    conn: Conn, app_name: str, *, pod_ttl_s: float = DEFAULT_POD_TTL_S
) -> DeploymentStatus:
    deployment = await get_deployment(conn, app_name)
    if deployment is None:
        if await latest_version(conn, app_name) is None:
            raise NotFoundInCatalog(f"no version of {app_name!r} is registered")
        return DeploymentStatus(app_name, None, 0, 0, "stopped", "not deployed")
    version = deployment.target_version
    replicas = deployment.replicas
    if replicas == 0:
        return DeploymentStatus(app_name, version, 0, 0, "stopped", "scaled to 0 replicas")
    slots = await list_slots(conn, app_name)
    serving = sum(1 for slot in slots if slot.serving and slot.version == version)
    if serving >= replicas:
        return DeploymentStatus(
            app_name,
            version,
            replicas,
            serving,
            "running",
            f"{serving}/{replicas} replicas serving v{version}",
        )
    failure = (await _start_failures(conn, app_name)).get((app_name, version))
    if failure is not None:
        who = f"pod {failure.pod_id}" if failure.pod_id else "a pod"
        reason = (
            f"{serving}/{replicas} replicas serving v{version}; {who} {failure_text(version, failure)}"
            f" (next attempt in {failure.retry_in_s:.0f} s)"
        )
        return DeploymentStatus(app_name, version, replicas, serving, "failed", reason)
    record = await get_version(conn, app_name, version)
    assert record is not None  # the deployment's foreign key guarantees it
    # Slots a pod holds but has not loaded yet are being started: not waiting for a pod.
    loading = sum(1 for slot in slots if slot.lease_live and not slot.serving and slot.version == version)
    unclaimed = max(0, replicas - serving - loading)
    if unclaimed == 0:
        reason = f"{serving}/{replicas} replicas serving v{version}; {loading} loading"
    else:
        pods = await _live_pods(conn, pod_ttl_s)
        reason = _pending_reason(record.base_image, record.platform_interface, pods, unclaimed, replicas)
        if loading:
            reason += f" ({loading} loading)"
    errors = [slot.last_error for slot in slots if slot.last_error and slot.version == version]
    if errors:
        reason += f" (a pod failed to start it: {errors[0]})"
    return DeploymentStatus(app_name, version, replicas, serving, "pending", reason)


# ---------------------------------------------------------------------------------------------- states

FunctionsCache = dict[tuple[str, int], tuple[str, ...] | None]
"""Function names per (service, version); versions are immutable, so callers may keep it."""


async def _functions(conn: Conn, wanted: list[tuple[str, int]], cache: FunctionsCache) -> None:
    missing = [key for key in wanted if key not in cache]
    if not missing:
        return
    cur = await conn.execute(
        "SELECT app_name, version, CASE WHEN jsonb_typeof(schema_definition -> 'functions') = 'object'"
        " THEN ARRAY(SELECT jsonb_object_keys(schema_definition -> 'functions')) END"
        " FROM application_catalog WHERE (app_name, version) IN"
        " (SELECT * FROM unnest(%s::text[], %s::integer[]))",
        ([a for a, _ in missing], [v for _, v in missing]),
    )
    for app, version, names in await cur.fetchall():
        cache[(str(app), int(version))] = None if names is None else tuple(sorted(names))


async def service_states(
    conn: Conn,
    app_name: str | None = None,
    *,
    pod_ttl_s: float = DEFAULT_POD_TTL_S,
    functions: FunctionsCache | None = None,
) -> dict[str, dict[str, Any]]:
    """The state of every service in the catalog (or of ``app_name`` only), ready to publish."""
    where, params = ("", ()) if app_name is None else (" WHERE app_name = %s", (app_name,))
    cache: FunctionsCache = {} if functions is None else functions
    cur = await conn.execute(
        f"SELECT app_name, version, base_image, platform_interface FROM application_catalog{where}"
        " ORDER BY app_name, version",
        params,
    )
    versions: dict[str, dict[int, tuple[str, str]]] = {}
    for app, version, base, iface in await cur.fetchall():
        versions.setdefault(str(app), {})[int(version)] = (str(base), str(iface))
    if not versions:
        return {}
    await _functions(conn, [(a, v) for a, vs in versions.items() for v in vs], cache)
    cur = await conn.execute(f"SELECT app_name, replicas FROM application_deployments{where}", params)
    replicas = {str(row[0]): int(row[1]) for row in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT app_name, version, count(*), count(*) FILTER (WHERE pod_id IS NOT NULL"
        " AND lease_expires_at > now() AND serving_generation = generation)"
        f" FROM replica_slots{where} GROUP BY app_name, version",
        params,
    )
    slots = {(str(r[0]), int(r[1])): (int(r[2]), int(r[3])) for r in await cur.fetchall()}
    cur = await conn.execute(
        f"SELECT app_name, dormant_alias_primary(app_name, alias) FROM aliases{where}"
        + (" AND" if where else " WHERE")
        + " alias = %s",
        (*params, LIVE_ALIAS),
    )
    live = {str(row[0]): int(row[1]) for row in await cur.fetchall() if row[1] is not None}
    failures = await _start_failures(conn, app_name)
    pods = await _live_pods(conn, pod_ttl_s)
    return {
        app: service_state(
            app,
            {
                v: _version_state(app, v, images, slots.get((app, v), (0, 0)), failures.get((app, v)), pods)
                for v, images in known.items()
            },
            {v: cache.get((app, v)) for v in known},
            replicas.get(app),
            live.get(app),
        )
        for app, known in versions.items()
    }


async def read_service_state(
    conn: Conn, app_name: str, *, pod_ttl_s: float = DEFAULT_POD_TTL_S
) -> dict[str, Any] | None:
    """What the controller publishes on ``mesh/services/{app_name}``; None for no such service."""
    return (await service_states(conn, app_name, pod_ttl_s=pod_ttl_s)).get(app_name)


def _version_state(
    app: str,
    version: int,
    images: tuple[str, str],
    counts: tuple[int, int],
    failure: StartFailure | None,
    pods: list[tuple[list[str], list[str], str]],
) -> dict[str, Any]:
    total, serving = counts
    if total == 0:
        return {"state": "not-deployed", "reason": f"{app} v{version} is not deployed"}
    if serving > 0:
        return {"state": "serving", "reason": f"{app} v{version} has {serving}/{total} replicas serving"}
    if failure is not None:
        return {
            "state": "failed",
            "reason": f"{app} {failure_text(version, failure)}",
            "retryAt": failure.retry_at.isoformat(),
        }
    pending = _pending_reason(images[0], images[1], pods, total, total)
    return {"state": "starting", "reason": f"{app} v{version} is starting: {pending}"}


def service_state(
    app: str,
    versions: dict[int, dict[str, Any]],
    functions: dict[int, tuple[str, ...] | None],
    replicas: int | None,
    live: int | None,
) -> dict[str, Any]:
    """One service's published state (pure): versions with their state and functions, and what an
    unversioned call reaches. Function lists are shared between versions that have the same ones."""
    lists: list[list[str]] = []
    entries: dict[str, dict[str, Any]] = {}
    for version in sorted(versions):
        entry = dict(versions[version])
        names = functions.get(version)
        if names is not None:
            if list(names) not in lists:
                lists.append(list(names))
            entry["functions"] = lists.index(list(names))
        entries[str(version)] = entry
    if replicas is None:
        state, reason = "not-deployed", f"{app} is not deployed"
    elif replicas == 0:
        state, reason = "stopped", f"{app} is scaled to 0 replicas"
    elif live is not None and live in versions:
        state, reason = versions[live]["state"], versions[live]["reason"]
    else:
        state, reason = "starting", f"{app} is starting: no version is live yet"
    return {
        "service": app,
        "latest": max(versions) if versions else None,
        "live": live,
        "state": state,
        "reason": reason,
        "versions": entries,
        "functions": lists,
    }
