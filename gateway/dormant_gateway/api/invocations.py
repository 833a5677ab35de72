"""``/api/v1/invocations``: the result of an async invocation, and the lists (dead letters included)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError

from ..auth import Action
from .common import SERVICE_NAME, authorize, int_param, json_response, state
from .views import invocation_view

STATUSES = ("queued", "running", "succeeded", "dead")


async def get_invocation(request: Request) -> Response:
    await authorize(request, Action.READ)
    call_id = str(request.path_params["call_id"])
    record = await state(request).store.get_invocation(call_id)
    if record is None:
        raise NotFound(f"no invocation {call_id!r}")
    return json_response(invocation_view(record))


async def list_invocations(request: Request) -> Response:
    """``?status=dead`` is the dead-letter list; ``function`` (a service) and ``triggerId`` filter."""
    await authorize(request, Action.READ)
    query = request.query_params
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
    function = query.get("function") or None
    if function is not None and not SERVICE_NAME.match(function):
        raise ValidationError("function must be a function (service) name")
    limit = int_param(request, "limit", default=50, low=1, high=500)
    records = await state(request).store.list_invocations(
        app_name=function, status=status, trigger_id=query.get("triggerId") or None, limit=limit
    )
    return json_response({"items": [invocation_view(r) for r in records]})
