"""``deployment_status``: whether a deployment runs and, if not, why (for ``dormant status``)."""

from __future__ import annotations

from .db import Conn
from .deployments import get_deployment, list_slots
from .errors import NotFoundInCatalog
from .records import DeploymentStatus
from .versions import get_version, latest_version


async def _live_pods(conn: Conn, pod_ttl_s: float) -> list[tuple[list[str], list[str], str]]:
    """(base_images, platform_interfaces, state) of pods seen within ``pod_ttl_s`` that did not stop."""
    cur = await conn.execute(
        "SELECT base_images, platform_interfaces, state FROM pods"
        " WHERE state <> 'gone' AND last_seen > now() - make_interval(secs => %s::float8)",
        (float(pod_ttl_s),),
    )
    return [(list(row[0]), list(row[1]), str(row[2])) for row in await cur.fetchall()]


async def deployment_status(conn: Conn, app_name: str, *, pod_ttl_s: float) -> DeploymentStatus:
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
    record = await get_version(conn, app_name, version)
    assert record is not None  # the deployment's foreign key guarantees it
    pods = await _live_pods(conn, pod_ttl_s)
    with_base = [pod for pod in pods if record.base_image in pod[0]]
    able = [pod for pod in with_base if record.platform_interface in pod[1]]
    missing = replicas - serving
    if not with_base:
        reason = f"no registered pod provides base runtime {record.base_image}"
    elif not able:
        reason = (
            f"no registered pod provides platform interface {record.platform_interface}"
            f" with base runtime {record.base_image}"
        )
    elif not any(pod[2] == "idle" for pod in able):
        reason = f"waiting for a pod: all {len(able)} pods that can run {record.base_image} are busy"
    else:
        reason = f"waiting for a pod to claim {missing} of {replicas} slots"
    errors = [slot.last_error for slot in slots if slot.last_error]
    if errors:
        reason += f" (a pod failed to start it: {errors[0]})"
    return DeploymentStatus(app_name, version, replicas, serving, "pending", reason)
