"""Which version a call goes to, whether its target exists, and why one that exists is not answering.

``route`` decides the version once per call, by the gateway's SDK client: a weighted pick from the
route table the controller publishes (``mesh/routes/{svc}``, which lists only versions that serve), as
every SDK client picks; the gateway then calls that version, so the client does not pick again.
The gateway has the catalog, so it tells a caller what is wrong: ``NotFound`` (404) for a service,
version, alias or function that does not exist or was deleted; ``Unavailable`` (503) with the reason for
one that exists but nothing serves (not deployed, scaled to 0, starting, failed to start: the error).
``check_target`` runs before a call (from a cache, confirmed against the catalog before a 404);
``explain_unavailable`` and the alias checks in ``route`` run only when nothing serves the target, so
a served call pays nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from dormant.errors import DormantError, NotFound, Unavailable, ValidationError
from dormant_catalog import CatalogError, NotFoundInCatalog
from dormant_catalog import status as status_sql
from dormant_catalog import versions as version_sql
from dormant_catalog.aliases import LATEST_ALIAS, LIVE_ALIAS, get_alias

from .state import GatewayState

log = logging.getLogger("dormant.gateway.targets")


async def route(gateway: GatewayState, service: str, *, alias: str | None, version: int | None) -> int | None:
    """The version to call (``version`` itself when given); None for the live topic (no table yet)."""
    if version is not None:
        if alias is not None:
            raise ValidationError("give either an alias or a version, not both")
        return version
    alias = alias or LIVE_ALIAS
    client = gateway.client
    # The SDK's one route decision (it subscribes to the table on first use and waits for it).
    picked = await client.route(service, alias=alias)
    if picked is not None or alias == LIVE_ALIAS:
        return picked  # no live table: service/{svc}/{fn} reaches the live primary's pods
    details = {"service": service, "alias": alias}
    if alias == LATEST_ALIAS:
        latest = await gateway.db.run(version_sql.latest_version, service)
        if latest is None:
            raise NotFound(f"no version of {service!r} is registered", details)
        raise Unavailable(f"the newest version of {service!r} (v{latest}) is not serving", details)
    if await gateway.db.run(get_alias, service, alias) is None:
        raise NotFound(f"{service!r} has no alias {alias!r}", details)
    raise Unavailable(f"alias {alias!r} of {service!r} routes to no version that is serving", details)


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


def _unserved(error: DormantError) -> bool:
    """The client said it (nobody received the call), not a runtime."""
    return isinstance(error.details, dict) and error.details.get("noSubscribers") is True


async def explain_unavailable(
    gateway: GatewayState, service: str, function: str, version: int | None, error: DormantError
) -> DormantError:
    """The error to answer for a failed call of ``service.function``: for one nothing served (an
    ``Unavailable``, or the client's ``NotFound`` from the published service states, which know nothing
    of functions created through the control plane), NotFound or Unavailable with why, from the
    catalog; any other error as it is."""
    if not isinstance(error, Unavailable) and not _unserved(error):
        return error
    try:
        versions = await gateway.db.run(version_sql.list_versions, service)
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
            status = await gateway.db.run(status_sql.deployment_status, service)
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
