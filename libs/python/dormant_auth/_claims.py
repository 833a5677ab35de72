"""Claims → ``UserContext``: which claim holds the user id, email, roles and groups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dormant.context import UserContext


@dataclass(frozen=True, slots=True)
class ClaimNames:
    """Claim names; a dotted name reads a nested claim (Keycloak's ``realm_access.roles``)."""

    user_id: str = "sub"
    email: str = "email"
    roles: str = "roles"
    groups: str = "groups"


def _lookup(claims: Mapping[str, Any], name: str) -> Any:
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _names(value: Any) -> tuple[str, ...]:
    """A claim holding names: a list of strings, or one space- or comma-separated string (the form
    some providers use for ``scope``-like claims)."""
    if isinstance(value, str):
        return tuple(part for part in value.replace(",", " ").split() if part)
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in value if isinstance(item, str) and item)
    return ()


def user_from_claims(claims: Mapping[str, Any], token: str, names: ClaimNames = ClaimNames()) -> UserContext:
    user_id = _lookup(claims, names.user_id)
    email = _lookup(claims, names.email)
    return UserContext(
        user_id=str(user_id) if isinstance(user_id, str | int) and str(user_id) else None,
        email=email if isinstance(email, str) else None,
        roles=_names(_lookup(claims, names.roles)),
        groups=_names(_lookup(claims, names.groups)),
        token=token,
    )
