"""Roles and what each may do (the seed's table), as one matrix.

| role      | may                                                                                   |
|-----------|---------------------------------------------------------------------------------------|
| admin     | everything                                                                            |
| developer | read; create and update functions, upload versions, manage aliases other than         |
|           | production, triggers, environment, concurrency; deploy to dev and staging; invoke      |
| operator  | read; deploy to production, roll back, move the production alias, enable/disable      |
|           | triggers, concurrency; invoke                                                         |
| viewer    | read only (functions, versions, aliases, deployments, triggers, metrics, invocations) |

Only an admin deletes functions and versions.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

from dormant_catalog.aliases import LIVE_ALIAS


class Role(enum.StrEnum):
    ADMIN = "admin"
    DEVELOPER = "developer"
    OPERATOR = "operator"
    VIEWER = "viewer"


class Action(enum.StrEnum):
    READ = "read"
    INVOKE = "invoke"
    CREATE_FUNCTION = "create-function"
    UPDATE_FUNCTION = "update-function"
    DELETE_FUNCTION = "delete-function"
    UPLOAD_VERSION = "upload-version"
    DELETE_VERSION = "delete-version"
    SET_ALIAS = "set-alias"
    SET_PRODUCTION_ALIAS = "set-production-alias"
    DEPLOY_NONPROD = "deploy-nonprod"
    DEPLOY_PROD = "deploy-prod"
    ROLLBACK = "rollback"
    MANAGE_TRIGGERS = "manage-triggers"
    TOGGLE_TRIGGERS = "toggle-triggers"
    SET_ENVIRONMENT = "set-environment"
    SET_CONCURRENCY = "set-concurrency"
    SET_SECRETS = "set-secrets"


_MATRIX: dict[Role, frozenset[Action]] = {
    Role.ADMIN: frozenset(Action),
    Role.DEVELOPER: frozenset(
        {
            Action.READ,
            Action.INVOKE,
            Action.CREATE_FUNCTION,
            Action.UPDATE_FUNCTION,
            Action.UPLOAD_VERSION,
            Action.SET_ALIAS,
            Action.DEPLOY_NONPROD,
            Action.MANAGE_TRIGGERS,
            Action.TOGGLE_TRIGGERS,
            Action.SET_ENVIRONMENT,
            Action.SET_CONCURRENCY,
            Action.SET_SECRETS,
        }
    ),
    Role.OPERATOR: frozenset(
        {
            Action.READ,
            Action.INVOKE,
            Action.SET_ALIAS,
            Action.SET_PRODUCTION_ALIAS,
            Action.DEPLOY_NONPROD,
            Action.DEPLOY_PROD,
            Action.ROLLBACK,
            Action.TOGGLE_TRIGGERS,
            Action.SET_CONCURRENCY,
        }
    ),
    Role.VIEWER: frozenset({Action.READ}),
}

PRODUCTION_ALIASES = frozenset({LIVE_ALIAS, "production", "prod"})


def allowed(roles: Iterable[Role], action: Action) -> bool:
    return any(action in _MATRIX[role] for role in roles)


def parse_roles(claim: Any) -> frozenset[Role]:
    """Roles from a token claim: a list or a space/comma separated string; unknown names are ignored."""
    if isinstance(claim, str):
        names: list[Any] = claim.replace(",", " ").split()
    elif isinstance(claim, list):
        names = claim
    else:
        return frozenset()
    known = {role.value: role for role in Role}
    return frozenset(known[n.lower()] for n in names if isinstance(n, str) and n.lower() in known)
