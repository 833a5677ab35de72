"""``/api/v1/deployments``: deploy a version all at once or by a rollout strategy, read where a
deployment and its rollout stand, promote a rollout, roll back.

``environment`` ``production`` (the default) moves the ``live`` alias and the replica slots, and needs
the operator (or admin) role; ``dev`` and ``staging`` point the alias of that name at the version,
which developers may do.

A ``strategy`` other than ``AllAtOnce`` (``Canary``, ``Linear``, ``BlueGreen``, ``Rolling``,
``ABTesting``; ``config`` as in the seed, see ``api.strategies``) starts the same rollout as
``dormant deploy --strategy``: a row the catalog's rollout controller drives, judges and rolls back.
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
from dormant_catalog.errors import InvalidCatalogRequest
from dormant_catalog.gateway import functions as function_sql
from dormant_catalog.records import DeploymentRecord
from dormant_catalog.rollouts import actions as rollout_sql
from dormant_catalog.rollouts import store as rollout_store
from dormant_catalog.rollouts.config import RolloutSettingError
from dormant_catalog.rollouts.records import RolloutRecord

from ..auth import Action
from ..invoke_input import parse_version
from ..state import GatewayState
from ..validation import NAME
from .common import authenticate, authorize, json_object, json_response, require, service_name, state
from .strategies import field_error, rollout_config, strategy_of
from .views import deployment_view

ENVIRONMENTS = ("production", "staging", "dev")
MAX_REPLICAS = 1000


def rollout_view(record: RolloutRecord | None, deployment: DeploymentRecord | None) -> dict[str, Any] | None:
    """A rollout as ``dormant status`` shows it; ``progress`` is the controller's latest word on it
    (step, samples seen, what it waits for) while it runs."""
    if record is None:
        return None
    progress = deployment.status_reason if deployment is not None and record.active else None
    return {**record.to_json(), "progress": progress}


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
    strategy = strategy_of(body.get("strategy", "AllAtOnce"))
    if strategy != "all-at-once":
        return await _start_rollout(request, principal.sub, name, strategy, body)
    if body.get("config") not in (None, {}):
        raise ValidationError("an AllAtOnce deploy takes no config settings", {"field": "config"})
    replicas = _replicas(body.get("replicas"))
    gateway = state(request)
    version = await _existing_version(gateway, name, parse_version(body.get("version")))
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


async def _start_rollout(
    request: Request, actor: str, name: str, strategy: str, body: dict[str, Any]
) -> Response:
    """``POST /api/v1/deployments`` with a rollout strategy: what ``dormant deploy --strategy`` does."""
    if body.get("environment", "production") != "production":
        raise ValidationError(
            "a rollout moves the live alias: its environment is production", {"field": "environment"}
        )
    if body.get("replicas") is not None:
        raise ValidationError(
            "replicas is for AllAtOnce deploys: a rollout keeps the deployment's replicas",
            {"field": "replicas"},
        )
    raw = rollout_config(strategy, body.get("config"))
    version = parse_version(body.get("version"))
    if "versionB" in raw:
        # ABTesting names the new version in its config as versionB; the request's version may too.
        named = parse_version(raw["versionB"])
        if version is not None and named != version:
            raise ValidationError(
                f"config.versionB {raw['versionB']!r} is not the request's version {version}",
                {"field": "config.versionB"},
            )
        version = named
    gateway = state(request)
    version = await _existing_version(gateway, name, version)
    try:
        record = await gateway.db.run(rollout_sql.start, name, version, raw, actor=actor)
    except RolloutSettingError as exc:
        raise field_error(exc) from None
    deployment = await gateway.db.run(deployment_sql.get_deployment, name)
    status = await gateway.db.run(status_sql.deployment_status, name)
    view = {
        **deployment_view(deployment, status),
        "environment": "production",
        "rollout": rollout_view(record, deployment),
    }
    return json_response(view, status=201, headers={"Location": f"/api/v1/deployments/{name}"})


async def _existing_version(gateway: GatewayState, name: str, version: int | None) -> int:
    """``version`` (default: the latest) of a function that was not deleted, or NotFound."""
    if await gateway.db.run(function_sql.is_deleted, name):
        raise NotFound(f"function {name!r} was deleted")
    if version is None:
        version = await gateway.db.run(version_sql.latest_version, name)
        if version is None:
            raise NotFound(f"no version of {name!r} is registered")
    if await gateway.db.run(version_sql.get_version, name, version) is None:
        raise NotFound(f"{name!r} has no version {version}")
    return version


async def get_deployment(request: Request) -> Response:
    """Where the deployment stands, with its newest rollout (``rollout``: null when it never had one)."""
    await authorize(request, Action.READ)
    name = service_name(request)
    gateway = state(request)
    record = await gateway.db.run(deployment_sql.get_deployment, name)
    if record is None:
        raise NotFound(f"{name!r} is not deployed")
    status = await gateway.db.run(status_sql.deployment_status, name)
    rollouts = await gateway.db.run(rollout_store.list_rollouts, name, limit=1)
    return json_response(
        {
            **deployment_view(record, status),
            "environment": "production",
            "rollout": rollout_view(rollouts[0] if rollouts else None, record),
        }
    )


async def promote(request: Request) -> Response:
    """Take the rollout in progress to 100 % now (``dormant promote``): an A/B winner, a blue-green
    switch, a canary one trusts. The controller applies it on its next tick."""
    principal = await authorize(request, Action.DEPLOY_PROD, limit="deploy")
    name = service_name(request)
    body = await json_object(request)
    if body:
        raise ValidationError("promote takes no fields", {"field": sorted(body)[0]})
    gateway = state(request)
    if await gateway.db.run(deployment_sql.get_deployment, name) is None:
        raise NotFound(f"{name!r} is not deployed")
    said = await gateway.db.run(rollout_sql.promote, name, actor=principal.sub)
    record = await gateway.db.run(rollout_store.get_active, name)
    deployment = await gateway.db.run(deployment_sql.get_deployment, name)
    return json_response({"functionName": name, "message": said, "rollout": rollout_view(record, deployment)})


async def rollback(request: Request) -> Response:
    """Without ``version``: roll back the rollout in progress, or the last one while its previous
    version is still kept (as ``dormant rollback``: traffic moves back at once); else deploy the newest
    non-deprecated version older than the one deployed now. With ``version``: deploy it all at once
    (the rollout's previous version rolls the rollout back)."""
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
    active = await gateway.db.run(rollout_store.get_active, name)
    if version is None or (active is not None and version == active.from_version):
        rolled = await _roll_back_rollout(gateway, name, principal.sub)
        if rolled is not None:
            return rolled
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


async def _roll_back_rollout(gateway: GatewayState, name: str, actor: str) -> Response | None:
    """The catalog's rollback of the newest rollout, or None when it has nothing to roll back."""
    try:
        said = await gateway.db.run(rollout_sql.rollback, name, actor=actor)
    except InvalidCatalogRequest:
        return None  # no rollout in progress and no previous version kept
    record = (await gateway.db.run(rollout_store.list_rollouts, name, limit=1))[0]
    deployment = await gateway.db.run(deployment_sql.get_deployment, name)
    status = await gateway.db.run(status_sql.deployment_status, name)
    return json_response(
        {
            **deployment_view(deployment, status),
            "environment": "production",
            "rolledBackFrom": record.to_version,
            "message": said,
            "rollout": rollout_view(record, deployment),
        }
    )
