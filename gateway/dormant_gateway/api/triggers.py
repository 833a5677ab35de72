"""``/api/v1/functions/{name}/triggers``: create, list, get, delete, enable, disable (with metrics)."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError
from dormant_catalog.gateway import functions as function_sql
from dormant_catalog.gateway import triggers as trigger_sql

from ..auth import Action
from ..triggers.settings import validate_trigger
from .common import authorize, json_object, json_response, service_name, state
from .views import trigger_view

TRIGGER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


def _trigger_id(request: Request) -> str:
    """The trigger id of the path; one that cannot exist is NotFound before any query."""
    trigger_id = str(request.path_params["trigger_id"])
    if not TRIGGER_ID.fullmatch(trigger_id):
        raise NotFound(f"{request.path_params['name']!r} has no trigger {trigger_id[:80]!r}")
    return trigger_id


async def create_trigger(request: Request) -> Response:
    principal = await authorize(request, Action.MANAGE_TRIGGERS, limit="manage")
    name = service_name(request)
    kind, target, config, enabled = validate_trigger(await json_object(request))
    gateway = state(request)
    if kind == "queue" and gateway.config.rabbitmq_url is None:
        raise ValidationError(
            "queue triggers need a RabbitMQ: start the gateway with DORMANT_RABBITMQ_URL or --rabbitmq-url"
            " (`dormant dev --rabbitmq` starts a private one)",
            {"field": "type"},
        )
    if kind == "stream" and gateway.config.nats_url is None:
        raise ValidationError(
            "stream triggers need a NATS server with JetStream: start the gateway with DORMANT_NATS_URL"
            " (`dormant dev --nats` starts a private one)",
            {"field": "type"},
        )
    if await gateway.db.run(function_sql.get_function, name) is None:
        raise NotFound(f"no function {name!r}")
    record = await gateway.db.run(
        trigger_sql.create_trigger,
        function_name=name,
        kind=kind,
        target=target,
        config=config,
        enabled=enabled,
        actor=principal.sub,
    )
    gateway.bump_triggers()
    metrics = await gateway.db.run(trigger_sql.get_metrics, [record.trigger_id])
    return json_response(
        trigger_view(record, metrics.get(record.trigger_id)),
        status=201,
        headers={"Location": f"/api/v1/functions/{name}/triggers/{record.trigger_id}"},
    )


async def list_triggers(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    gateway = state(request)
    records = await gateway.db.run(trigger_sql.list_triggers, name)
    metrics = await gateway.db.run(trigger_sql.get_metrics, [r.trigger_id for r in records])
    return json_response({"items": [trigger_view(r, metrics.get(r.trigger_id)) for r in records]})


async def get_trigger(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    gateway = state(request)
    record = await gateway.db.run(trigger_sql.get_trigger, name, _trigger_id(request))
    if record is None:
        raise NotFound(f"{name!r} has no trigger {_trigger_id(request)!r}")
    metrics = await gateway.db.run(trigger_sql.get_metrics, [record.trigger_id])
    return json_response(trigger_view(record, metrics.get(record.trigger_id)))


async def delete_trigger(request: Request) -> Response:
    principal = await authorize(request, Action.MANAGE_TRIGGERS, limit="manage")
    name = service_name(request)
    gateway = state(request)
    if not await gateway.db.run(trigger_sql.delete_trigger, name, _trigger_id(request), actor=principal.sub):
        raise NotFound(f"{name!r} has no trigger {_trigger_id(request)!r}")
    gateway.bump_triggers()
    return Response(status_code=204)


async def _toggle(request: Request, enabled: bool) -> Response:
    principal = await authorize(request, Action.TOGGLE_TRIGGERS, limit="manage")
    name = service_name(request)
    gateway = state(request)
    record = await gateway.db.run(
        trigger_sql.set_enabled, name, _trigger_id(request), enabled, actor=principal.sub
    )
    if record is None:
        raise NotFound(f"{name!r} has no trigger {_trigger_id(request)!r}")
    gateway.bump_triggers()
    metrics = await gateway.db.run(trigger_sql.get_metrics, [record.trigger_id])
    return json_response(trigger_view(record, metrics.get(record.trigger_id)))


async def enable_trigger(request: Request) -> Response:
    return await _toggle(request, True)


async def disable_trigger(request: Request) -> Response:
    return await _toggle(request, False)
