"""Versions (upload a ZIP, list, get, deprecate) and aliases (named, weighted) of a function."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError
from dormant_catalog import aliases as alias_sql
from dormant_catalog import versions as version_sql
from dormant_catalog.gateway import functions as function_sql

from ..auth import Action, Principal
from ..auth.roles import PRODUCTION_ALIASES
from ..http_errors import HttpError, conflict
from ..inputs import version_number
from ..upload import MAX_ZIP_BYTES, publish_zip
from .common import (
    authenticate,
    authorize,
    json_object,
    json_response,
    read_body,
    require,
    service_name,
    state,
)
from .views import alias_view, version_view

ALIAS_NAME_HINT = "lowercase letters, digits and dashes, starting with a letter"
ALIAS = re.compile(r"[a-z][a-z0-9-]{0,63}", re.ASCII)


def _version_param(request: Request) -> int:
    return version_number(str(request.path_params["version"]))


async def upload_version(request: Request) -> Response:
    principal = await authorize(request, Action.UPLOAD_VERSION, limit="manage")
    name = service_name(request)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ("application/zip", "application/octet-stream", "application/x-zip-compressed"):
        raise HttpError(415, "UnsupportedMediaType", "upload the code as application/zip")
    data = await read_body(request, MAX_ZIP_BYTES)
    gateway = state(request)
    if await gateway.db.run(function_sql.is_deleted, name):
        raise NotFound(f"function {name!r} was deleted")
    version, new, sha256 = await publish_zip(
        data, name=name, db=gateway.db, layer_store=gateway.config.layer_store, actor=principal.sub
    )
    record = await gateway.db.run(version_sql.get_version, name, version)
    assert record is not None
    view = {**version_view(record), "created": new, "uploadSha256": sha256}
    return json_response(
        view, status=201 if new else 200, headers={"Location": f"/api/v1/functions/{name}/versions/{version}"}
    )


async def list_versions(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    records = await state(request).db.run(version_sql.list_versions, name)
    return json_response({"items": [version_view(r) for r in records]})


async def get_version(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    version = _version_param(request)
    record = await state(request).db.run(version_sql.get_version, name, version)
    if record is None:
        raise NotFound(f"{name!r} has no version {version}")
    return json_response(version_view(record))


async def delete_version(request: Request) -> Response:
    """Versions are immutable and never renumbered: deleting one deprecates it, if nothing routes to it."""
    principal = await authorize(request, Action.DELETE_VERSION, limit="manage")
    name = service_name(request)
    version = _version_param(request)
    gateway = state(request)
    if await gateway.db.run(version_sql.get_version, name, version) is None:
        raise NotFound(f"{name!r} has no version {version}")
    reason = await gateway.db.run(alias_sql.version_in_use, name, version)
    if reason is not None:
        raise conflict(f"version {version} of {name!r} is in use: {reason}")
    await gateway.db.run(version_sql.set_status, name, version, "deprecated", actor=principal.sub)
    return Response(status_code=204)


def _weights(body: dict[str, Any]) -> dict[int, int]:
    if "version" in body and "weights" in body:
        raise ValidationError("give either version or weights")
    if "version" in body:
        return {version_number(body["version"]): 100}
    weights = body.get("weights")
    if not isinstance(weights, dict) or not weights:
        raise ValidationError('give version, or weights such as {"3": 90, "4": 10}')
    # The catalog checks the weights themselves (whole numbers from 0 to 100 adding up to 100).
    return {version_number(key, "version in weights"): value for key, value in weights.items()}


async def _set_alias(
    request: Request, principal: Principal, alias: str, body: dict[str, Any], *, create: bool
) -> Response:
    name = service_name(request)
    action = Action.SET_PRODUCTION_ALIAS if alias in PRODUCTION_ALIASES else Action.SET_ALIAS
    require(request, principal, action, limit="manage")
    if not ALIAS.fullmatch(alias):
        raise ValidationError(f"invalid alias {alias!r}: {ALIAS_NAME_HINT}")
    if alias == alias_sql.LIVE_ALIAS:
        raise ValidationError("the live alias moves with deployments: POST /api/v1/deployments")
    weights = _weights(body)
    async with state(request).db.transaction() as conn:
        exists = await alias_sql.get_alias(conn, name, alias) is not None
        if create and exists:
            raise conflict(f"{name!r} has an alias {alias!r} already; PUT it to change it")
        if not create and not exists:
            raise NotFound(f"{name!r} has no alias {alias!r}")
        await alias_sql.set_alias(conn, name, alias, weights, actor=principal.sub)
        record = await alias_sql.get_alias(conn, name, alias)
    assert record is not None
    return json_response(alias_view(name, alias, record.weights, record), status=201 if create else 200)


async def create_alias(request: Request) -> Response:
    principal = await authenticate(request)
    body = await json_object(request)
    alias = body.pop("name", None)
    if not isinstance(alias, str):
        require(request, principal, Action.SET_ALIAS)
        raise ValidationError("name (the alias) is required")
    return await _set_alias(request, principal, alias, body, create=True)


async def put_alias(request: Request) -> Response:
    principal = await authenticate(request)
    body = await json_object(request)
    return await _set_alias(request, principal, str(request.path_params["alias"]), body, create=False)


async def list_aliases(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    aliases = await state(request).db.run(alias_sql.list_aliases, name)
    return json_response({"items": [alias_view(name, a, w) for a, w in aliases.items()]})


async def get_alias(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    alias = str(request.path_params["alias"])
    if not ALIAS.fullmatch(alias):
        raise NotFound(f"{name!r} has no alias {alias!r}")
    record = await state(request).db.run(alias_sql.get_alias, name, alias)
    if record is None:
        raise NotFound(f"{name!r} has no alias {alias!r}")
    return json_response(alias_view(name, alias, record.weights, record))
