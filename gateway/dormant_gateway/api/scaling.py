"""``/api/v1/functions/{name}/scaling``: a function's autoscaling settings (FR-FN-006).

``PUT`` replaces them with a JSON object of ``minInstances``, ``maxInstances``, ``targetConcurrency``,
``scaleUpCooldown``, ``scaleDownCooldown`` and ``schedules`` (``dormant_catalog.scaling`` checks them:
unknown keys and values out of range are a ``ValidationError`` naming the key; left-out keys take
their defaults) and answers the settings as stored, which the controller's autoscaler applies from its
next evaluation. ``GET`` answers them (``{"function": name, "scaling": null}`` when there are none).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError
from dormant_catalog.gateway import functions as function_sql
from dormant_catalog.scaling import ScalingSettingError, check_scaling

from ..auth import Action
from .common import authorize, json_object, json_response, service_name, state


async def function_scaling(request: Request) -> Response:
    if request.method == "GET":
        return await get_scaling(request)
    return await put_scaling(request)


async def get_scaling(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    if await state(request).db.run(function_sql.get_function, name) is None:
        raise NotFound(f"no function {name!r}")
    settings = await state(request).db.run(function_sql.get_scaling, name)
    return json_response({"function": name, "scaling": settings})


def validate_scaling(body: dict[str, Any]) -> dict[str, Any]:
    """The settings to store, or a ``ValidationError`` whose ``errors`` name the offending key."""
    try:
        return check_scaling(body)
    except ScalingSettingError as exc:
        raise ValidationError(
            f"invalid scaling: {exc.field or '/'}: {exc}",
            {"errors": [{"path": exc.field, "message": str(exc)}]},
        ) from None


async def put_scaling(request: Request) -> Response:
    principal = await authorize(request, Action.SET_CONCURRENCY, limit="manage")
    name = service_name(request)
    settings = validate_scaling(await json_object(request))
    await state(request).db.run(
        function_sql.update_function, name, {"scaling": settings}, actor=principal.sub
    )
    return json_response({"function": name, "scaling": settings})
