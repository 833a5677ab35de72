"""``/api/v1/deployments``: deploy a version (all at once), read where a deployment stands, roll back.

``environment`` ``production`` (the default) moves the ``live`` alias and the replica slots, and needs
the operator (or admin) role; ``dev`` and ``staging`` point the alias of that name at the version,
which developers may do.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError
from dormant_catalog import aliases as alias_sql
from dormant_catalog import deployments as deployment_sql
from dormant_catalog import status as status_sql
from dormant_catalog import versions as version_sql
from dormant_catalog.gateway import functions as function_sql
from dormant_catalog.rollouts import actions as rollout_sql

from ..auth import Action
from ..invoke_input import parse_version
from ..validation import NAME
from .common import authenticate, authorize, json_object, json_response, require, service_name, state
from .views import deployment_view

STRATEGIES = {"allatonce": "all-at-once", "direct": "all-at-once", "all-at-once": "all-at-once"}
PLANNED_STRATEGIES = ("Canary", "BlueGreen", "Rolling", "Linear", "ABTesting")
ENVIRONMENTS = ("production", "staging", "dev")
MAX_REPLICAS = 1000


def _replicas(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REPLICAS:
        raise ValidationError(f"replicas must be an integer from 0 to {MAX_REPLICAS}")
    return value


async def create_deployment(request: Request) -> Response:
    principal = await authenticate(request)
    body = await json_object(request)
    environment = body.get("environment", "production")
    if environment not in ENVIRONMENTS:
        raise ValidationError(f"environment must be one of {', '.join(ENVIRONMENTS)}")
    action = Action.DEPLOY_PROD if environment == "production" else Action.DEPLOY_NONPROD
    require(request, principal, action, limit="deploy")
    unknown = set(body) - {"functionName", "version", "strategy", "config", "environment", "replicas"}
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(sorted(unknown))}")
    name = body.get("functionName")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ValidationError("functionName must be 1 to 64 lowercase letters, digits or dashes")
    strategy_name = body.get("strategy", "AllAtOnce")
    if not isinstance(strategy_name, str):
        raise ValidationError("strategy must be a string")
    strategy = STRATEGIES.get(strategy_name.lower())
    if strategy is None:
        planned = strategy_name in PLANNED_STRATEGIES
        raise ValidationError(
            f"strategy {strategy_name!r} is {'not available in this gateway yet' if planned else 'unknown'};"
            " use AllAtOnce",
        )
    if body.get("config") is not None and not isinstance(body["config"], dict):
        raise ValidationError("config must be an object")
    version = parse_version(body.get("version"))
    replicas = _replicas(body.get("replicas"))
    gateway = state(request)
    if await gateway.db.run(function_sql.is_deleted, name):
        raise NotFound(f"function {name!r} was deleted")
    if version is None:
        version = await gateway.db.run(version_sql.latest_version, name)
        if version is None:
            raise NotFound(f"no version of {name!r} is registered")
    if await gateway.db.run(version_sql.get_version, name, version) is None:
        raise NotFound(f"{name!r} has no version {version}")
    if environment != "production":
        await gateway.db.run(alias_sql.set_alias, name, environment, {version: 100}, actor=principal.sub)
        return json_response(
            {
                "functionName": name,
                "version": version,
                "environment": environment,
                "alias": environment,
                "strategy": strategy,
                "state": "routed",
            },
            status=201,
        )
    if replicas is None:
        current = await gateway.db.run(deployment_sql.get_deployment, name)
        replicas = current.replicas if current is not None else 1
    record = await gateway.db.run(
        rollout_sql.deploy, name, version=version, replicas=replicas, actor=principal.sub
    )
    status = await gateway.db.run(status_sql.deployment_status, name)
    view = {**deployment_view(record, status), "environment": environment}
    return json_response(view, status=201, headers={"Location": f"/api/v1/deployments/{name}"})


async def get_deployment(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    gateway = state(request)
    record = await gateway.db.run(deployment_sql.get_deployment, name)
    if record is None:
        raise NotFound(f"{name!r} is not deployed")
    status = await gateway.db.run(status_sql.deployment_status, name)
    return json_response({**deployment_view(record, status), "environment": "production"})


async def rollback(request: Request) -> Response:
    """Deploy ``version``, or the newest non-deprecated version older than the one deployed now."""
    principal = await authorize(request, Action.ROLLBACK, limit="deploy")
    name = service_name(request)
    body = await json_object(request)
    if set(body) - {"version"}:
        raise ValidationError("the only field is version")
    gateway = state(request)
    current = await gateway.db.run(deployment_sql.get_deployment, name)
    if current is None:
        raise NotFound(f"{name!r} is not deployed")
    version = parse_version(body.get("version"))
    if version is None:
        older = [
            v.version
            for v in await gateway.db.run(version_sql.list_versions, name)
            if v.version < current.target_version and v.status != "deprecated"
        ]
        if not older:
            raise NotFound(f"{name!r} has no version older than {current.target_version} to roll back to")
        version = older[-1]
    elif await gateway.db.run(version_sql.get_version, name, version) is None:
        raise NotFound(f"{name!r} has no version {version}")
    record = await gateway.db.run(
        rollout_sql.deploy, name, version=version, replicas=current.replicas, actor=principal.sub
    )
    status = await gateway.db.run(status_sql.deployment_status, name)
    return json_response(
        {
            **deployment_view(record, status),
            "environment": "production",
            "rolledBackFrom": current.target_version,
        }
    )
