"""``/api/v1/functions``: create, update, soft delete, list (filters, pagination), get with metrics;
environment and concurrency settings."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError
from dormant_catalog import DeploymentStatus, NotFoundInCatalog
from dormant_catalog import aliases as alias_sql
from dormant_catalog import status as status_sql
from dormant_catalog import versions as version_sql
from dormant_catalog.gateway import functions as function_sql
from dormant_catalog.gateway import invocations as invocation_sql

from ..auth import Action
from ..http_errors import conflict
from ..validation import validate_concurrency, validate_create, validate_environment, validate_update
from .common import authorize, int_param, json_object, json_response, service_name, state
from .invocations import owner_filter
from .secrets import sync_policy
from .views import function_view, invocation_view

RECENT_S = 3600.0


async def create_function(request: Request) -> Response:
    principal = await authorize(request, Action.CREATE_FUNCTION, limit="manage")
    fields = validate_create(await json_object(request))
    record = await state(request).db.run(function_sql.create_function, owner=principal.sub, **fields)
    if record is None:
        raise conflict(f"function {fields['name']!r} exists")
    state(request).forget_function(record.name)
    return json_response(
        function_view(record), status=201, headers={"Location": f"/api/v1/functions/{record.name}"}
    )


async def list_functions(request: Request) -> Response:
    await authorize(request, Action.READ)
    query = request.query_params
    limit = int_param(request, "limit", default=50, low=1, high=100)
    tag: tuple[str, str] | None = None
    if query.get("tag"):
        key, sep, value = query["tag"].partition(":")
        if not sep or not key:
            raise ValidationError("tag filter must be key:value")
        tag = (key, value)
    include_deleted = query.get("includeDeleted", "false").lower()
    if include_deleted not in ("true", "false"):
        raise ValidationError("includeDeleted must be true or false")
    records = await state(request).db.run(
        function_sql.list_functions,
        name_contains=query.get("nameContains") or None,
        runtime=query.get("runtime") or None,
        tag=tag,
        include_deleted=include_deleted == "true",
        after=query.get("cursor") or None,
        limit=limit + 1,
    )
    page = records[:limit]
    next_cursor = page[-1].name if len(records) > limit else None
    return json_response({"items": [function_view(r) for r in page], "nextCursor": next_cursor})


async def get_function(request: Request) -> Response:
    principal = await authorize(request, Action.READ)
    name = service_name(request)
    gateway = state(request)
    record = await gateway.db.run(function_sql.get_function, name)
    if record is None:
        raise NotFound(f"no function {name!r}")
    versions = await gateway.db.run(version_sql.list_versions, name)
    aliases = await gateway.db.run(alias_sql.list_aliases, name)
    try:
        status: DeploymentStatus | None = await gateway.db.run(status_sql.deployment_status, name)
    except NotFoundInCatalog:
        status = None
    counts = await gateway.db.run(invocation_sql.status_counts, name, since_s=RECENT_S)
    recent = await gateway.db.run(
        invocation_sql.list_invocations, app_name=name, created_by=owner_filter(principal), limit=10
    )
    view: dict[str, Any] = function_view(record)
    view.update(
        {
            "latestVersion": versions[-1].version if versions else None,
            "versionCount": len(versions),
            "aliases": {a: {str(v): w for v, w in ws.items()} for a, ws in aliases.items()},
            "deployment": None
            if status is None
            else {
                "version": status.target_version,
                "replicas": status.replicas,
                "serving": status.serving,
                "state": status.state,
                "reason": status.reason,
            },
            "metrics": {
                "windowSeconds": int(RECENT_S),
                "asyncInvocations": {s: counts.get(s, 0) for s in ("queued", "running", "succeeded", "dead")},
            },
            "recentInvocations": [invocation_view(r) for r in recent],
        }
    )
    return json_response(view)


async def update_function(request: Request) -> Response:
    principal = await authorize(request, Action.UPDATE_FUNCTION, limit="manage")
    name = service_name(request)
    changes = validate_update(await json_object(request))
    record = await state(request).db.run(function_sql.update_function, name, changes, actor=principal.sub)
    state(request).forget_function(name)
    return json_response(function_view(record))


async def delete_function(request: Request) -> Response:
    principal = await authorize(request, Action.DELETE_FUNCTION, limit="manage")
    name = service_name(request)
    if not await state(request).db.run(function_sql.delete_function, name, actor=principal.sub):
        raise NotFound(f"no function {name!r}")
    state(request).forget_function(name)
    state(request).bump_triggers()
    return Response(status_code=204)


async def restore_function(request: Request) -> Response:
    """Undo a DELETE within the retention period: the function, its triggers and its deployment."""
    principal = await authorize(request, Action.DELETE_FUNCTION, limit="manage")
    name = service_name(request)
    gateway = state(request)
    if await gateway.db.run(function_sql.get_function, name, include_deleted=True) is None:
        raise NotFound(f"no function {name!r}")
    if not await gateway.db.run(function_sql.is_deleted, name):
        raise conflict(f"{name!r} is not deleted")
    retention_s = gateway.config.function_retention_s
    record = await gateway.db.run(
        function_sql.restore_function, name, retention_s=retention_s, actor=principal.sub
    )
    gateway.forget_function(name)
    gateway.bump_triggers()
    return json_response(function_view(record))


async def put_environment(request: Request) -> Response:
    principal = await authorize(request, Action.SET_ENVIRONMENT, limit="manage")
    name = service_name(request)
    variables = validate_environment(await json_object(request))
    record = await state(request).db.run(
        function_sql.update_function, name, {"environment": variables}, actor=principal.sub
    )
    await sync_policy(request, name, record.environment)  # the shared secrets it may now reference
    return json_response({"function": name, "variables": record.environment})


async def put_concurrency(request: Request) -> Response:
    principal = await authorize(request, Action.SET_CONCURRENCY, limit="manage")
    name = service_name(request)
    settings = validate_concurrency(await json_object(request))
    record = await state(request).db.run(
        function_sql.update_function, name, {"concurrency": settings}, actor=principal.sub
    )
    return json_response({"function": name, **record.concurrency})
