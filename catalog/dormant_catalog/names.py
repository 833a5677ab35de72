"""Validation of names the catalog stores (service names, aliases, statuses, replica counts)."""

from __future__ import annotations

import re

from .errors import InvalidCatalogRequest
from .records import VERSION_STATUSES

_APP_NAME = re.compile(r"^[a-z0-9-]{1,64}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9-]{0,63}$")


def check_app_name(app_name: str) -> str:
    if not _APP_NAME.match(app_name):
        raise InvalidCatalogRequest(
            f"invalid service name {app_name!r}: use lowercase letters, digits and dashes (at most 64)"
        )
    return app_name


def check_alias(alias: str) -> str:
    if not _ALIAS.match(alias):
        raise InvalidCatalogRequest(f"invalid alias {alias!r}: use lowercase letters, digits and dashes")
    return alias


def check_status(status: str) -> str:
    if status not in VERSION_STATUSES:
        raise InvalidCatalogRequest(f"invalid status {status!r}: one of {', '.join(VERSION_STATUSES)}")
    return status


def check_replicas(replicas: int) -> int:
    if replicas < 0:
        raise InvalidCatalogRequest(f"replicas must be 0 or more, not {replicas}")
    return replicas


def check_lease(lease_s: float) -> float:
    if not lease_s > 0:
        raise InvalidCatalogRequest(f"a lease must last more than 0 s, not {lease_s}")
    return lease_s
