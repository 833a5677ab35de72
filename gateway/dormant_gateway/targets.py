"""Whether a call's target exists, and why one that exists is not answering.

The gateway has the catalog, so it tells a caller which it is: ``NotFound`` (404) for a service,
version or function that does not exist or was deleted; ``Unavailable`` (503) with the reason for one
that exists but nothing serves (not deployed, scaled to 0, starting, failed to start: the error).
``check_target`` runs before a call (from a cache, confirmed against the catalog before a 404);
``explain_unavailable`` runs only after a call found nobody serving it, so a served call pays nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from dormant.errors import DormantError, NotFound, Unavailable
from dormant_catalog import CatalogError, NotFoundInCatalog

from .state import GatewayState

log = logging.getLogger("dormant.gateway.targets")


async def check_target(gateway: GatewayState, service: str, version: int | None) -> None:
    """Raise ``NotFound`` unless ``service`` (and ``version``, when given) exists and is not deleted."""
    info = await gateway.function_info(service)
    missing_version = version is not None and (info.latest_version is None or version > info.latest_version)
    if not info.exists or missing_version:
        info = await gateway.function_info(service, fresh=True)  # the cache may predate an upload
    if not info.exists:
        raise NotFound(f"no function {service!r}", {"service": service})
    if info.deleted:
        raise NotFound(f"function {service!r} was deleted", {"service": service})
    if version is not None and (info.latest_version is None or version > info.latest_version):
        raise NotFound(f"{service!r} has no version {version}", {"service": service, "version": version})


def _functions(interface: Any) -> set[str]:
    functions = interface.get("functions") if isinstance(interface, dict) else None
    return set(functions) if isinstance(functions, dict | list) else set()


async def explain_unavailable(
    gateway: GatewayState, service: str, function: str, version: int | None, error: Unavailable
) -> DormantError:
    """The error to answer when nothing served ``service.function``: NotFound, or Unavailable with why."""
    try:
        versions = await gateway.catalog.list_versions(service)
        details: dict[str, Any] = {"service": service, "function": function}
        if version is not None:
            details["version"] = version
        if not versions:
            return Unavailable(f"{service!r} is not deployed: no version has been uploaded", details)
        wanted = [v for v in versions if version is None or v.version == version]
        if wanted and not any(function in _functions(v.schema_definition) for v in wanted):
            where = f"version {version} of {service!r}" if version is not None else repr(service)
            return NotFound(f"{where} has no function {function!r}", details)
        try:
            status = await gateway.catalog.deployment_status(service)
        except NotFoundInCatalog:
            return Unavailable(f"{service!r} is not deployed", details)
        if version is not None and version != status.target_version:
            return Unavailable(
                f"version {version} of {service!r} is not serving (the deployment runs"
                f" {'no version' if status.target_version is None else f'v{status.target_version}'})",
                details,
            )
        state = {"stopped": "not deployed", "pending": "starting"}.get(status.state, status.state)
        details.update({"state": status.state, "reason": status.reason})
        if status.state == "running":
            return Unavailable(f"nothing answered {service}.{function}: {error.message}", details)
        return Unavailable(f"{service!r} is not serving ({state}): {status.reason}", details)
    except CatalogError as exc:
        log.warning("cannot explain why %s is unavailable: %s", service, exc)
        return error
