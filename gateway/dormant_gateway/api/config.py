"""``/api/v1/functions/{name}/config``: a function's live configuration (``dormant_catalog.live_config``),
values its running handlers read as ``ctx.config`` and that change without a restart.

``PUT`` replaces the values with the body's ``values`` object; ``PATCH`` merges its ``values`` into
them (a ``null`` value removes that name). Both answer the stored revision once the controller has
published it to the mesh, so the caller's next call sees it: ``?wait=S`` bounds that wait (0 to 30 s,
default 5); ``"delivered": false`` says it was not seen published in time (the change is stored and
still reaches the runtimes when the controller publishes it). ``GET`` answers the values, the revision
and whether it is published.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError
from dormant_catalog import InvalidCatalogRequest
from dormant_catalog import live_config as config_sql
from dormant_catalog.db import Conn
from dormant_catalog.gateway import functions as function_sql

from ..auth import Action
from .common import authorize, int_param, json_object, json_response, service_name, state

MAX_WAIT_S = 30


async def function_config(request: Request) -> Response:
    if request.method == "GET":
        return await get_config(request)
    return await change_config(request, merge=request.method == "PATCH")


def _view(config: config_sql.LiveConfig, **extra: Any) -> dict[str, Any]:
    return {
        "function": config.service,
        "revision": config.revision,
        "values": config.values,
        "published": config.published,
        **extra,
    }


async def _existing(conn: Conn, name: str) -> None:
    if await function_sql.get_function(conn, name) is None:
        raise NotFound(f"no function {name!r}")


async def get_config(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)

    async def read(conn: Conn) -> config_sql.LiveConfig:
        await _existing(conn, name)
        return await config_sql.get_config(conn, name)

    return json_response(_view(await state(request).db.run(read)))


async def change_config(request: Request, *, merge: bool) -> Response:
    principal = await authorize(request, Action.SET_ENVIRONMENT, limit="manage")
    name = service_name(request)
    wait_s = int_param(request, "wait", default=int(config_sql.PUBLISH_WAIT_S), low=0, high=MAX_WAIT_S)
    body = await json_object(request)
    unknown = set(body) - {"values"}
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(sorted(unknown))}; send {{\"values\": {{...}}}}")
    values = body.get("values")
    if not isinstance(values, dict):
        raise ValidationError("values must be an object of configuration values by name")

    async def change(conn: Conn) -> config_sql.LiveConfig:
        await _existing(conn, name)
        new = values
        if merge:
            current = await config_sql.get_config(conn, name)
            new = {**current.values, **values}
            new = {key: value for key, value in new.items() if value is not None}
        try:
            return await config_sql.set_config(conn, name, new, actor=principal.sub)
        except InvalidCatalogRequest as exc:
            raise ValidationError(f"invalid configuration: {exc}") from None

    db = state(request).db
    stored = await db.run(change)
    delivered = stored.published or (
        wait_s > 0 and await config_sql.wait_published(db, name, stored.revision, timeout_s=wait_s)
    )
    return json_response(_view(stored, published=delivered, delivered=delivered))
