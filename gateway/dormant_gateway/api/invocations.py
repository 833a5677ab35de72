"""``/api/v1/invocations``: the result of an async invocation, and the lists (dead letters included).

An invocation (its input, result and error) is visible only to the principal that made it (the
token's ``sub``; for a cron tick, the trigger's creator) and to admins; anyone else gets 404, the same
answer as for an invocation that does not exist, so callIds cannot be probed.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError
from dormant_catalog.gateway import invocations as invocation_sql

from ..auth import Action, Principal, Role
from .common import SERVICE_NAME, authorize, int_param, json_response, state
from .views import invocation_view

STATUSES = ("queued", "running", "succeeded", "dead")


CALL_ID = re.compile(r"[A-Za-z0-9._:-]{1,256}", re.ASCII)


def owner_filter(principal: Principal) -> str | None:
    """The ``created_by`` a principal's reads are limited to; None (everything) for an admin."""
    return None if Role.ADMIN in principal.roles else principal.sub


async def get_invocation(request: Request) -> Response:
    principal = await authorize(request, Action.READ)
    call_id = str(request.path_params["call_id"])
    record = await state(request).db.run(invocation_sql.get, call_id) if CALL_ID.fullmatch(call_id) else None
    owner = owner_filter(principal)
    if record is None or (owner is not None and record.created_by != owner):
        raise NotFound(f"no invocation {call_id[:300]!r}")
    return json_response(invocation_view(record))


async def list_invocations(request: Request) -> Response:
    """``?status=dead`` is the dead-letter list; ``function`` (a service) and ``triggerId`` filter."""
    principal = await authorize(request, Action.READ)
    query = request.query_params
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise ValidationError(f"status must be one of {', '.join(STATUSES)}")
    function = query.get("function") or None
    if function is not None and not SERVICE_NAME.fullmatch(function):
        raise ValidationError("function must be a function (service) name")
    limit = int_param(request, "limit", default=50, low=1, high=500)
    records = await state(request).db.run(
        invocation_sql.list_invocations,
        app_name=function,
        status=status,
        trigger_id=query.get("triggerId") or None,
        created_by=owner_filter(principal),
        limit=limit,
    )
    return json_response({"items": [invocation_view(r) for r in records]})
