"""``Authorizer``: grants of roles and permissions on a service's data (the seed's ``IAuthorizer``).

A grant gives a user (a token ``sub``) a role or a permission on a **database** — the name of the
service whose data it is (an Authorizer manages only its own service's database; any other is
``Forbidden``) — either on every collection of it (``collection=None``) or on one collection. Grants are
stored beside the documents and the DataStore's row-level security reads them, so they widen what a
user may do with documents it does not own:

============  ===========================================================
grant         lets the user, on documents of that database or collection
============  ===========================================================
``read``      read (``get_by_id``, ``query``)
``write``     read and update
``delete``    read and delete
``reader``    (role) read
``writer``    (role) read and update
``admin``     (role) read, update and delete; and grant or revoke on it
============  ===========================================================

Other role and permission names may be granted and checked (``has_role``, ``has_permission``) for the
service's own rules; the DataStore gives them no meaning. ``has_permission`` counts the permissions the
roles above imply (``admin`` implies ``read``, ``write`` and ``delete``). A collection-scoped check
(``collection="orders"``) counts grants on that collection and on the whole database; a database-wide
check (``collection=None``) counts only database-wide grants.

Who may call what:

- **assign / remove**: a caller whose token carries the role ``admin`` (``UserContext.roles``), or who
  holds the stored role ``admin`` on the database (or on that collection); anyone else gets
  ``Forbidden``.
- **has_role / has_permission**: a caller asking about itself, or one who may assign (as above).

``assign_*`` return True when something was added (False: every grant was already there);
``remove_*`` return True when something was removed. Every call, allowed or refused, and its decision
are written to the audit trail within the call's transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from .datastore import check_collection
from .errors import ValidationError

__all__ = [
    "ALL_COLLECTIONS",
    "DATASTORE_ACTIONS",
    "ROLE_PERMISSIONS",
    "Authorizer",
    "check_grant_name",
    "check_principal",
    "check_scope",
]

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "reader": frozenset({"read"}),
    "writer": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "delete"}),
}
"""The roles the DataStore knows, and the permissions each implies."""

DATASTORE_ACTIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"read", "write", "delete"}),
    "write": frozenset({"write"}),
    "delete": frozenset({"delete"}),
}
"""For each DataStore action, the permissions that allow it (roles count through ROLE_PERMISSIONS)."""

ALL_COLLECTIONS = "*"
"""How a database-wide grant is stored (no collection name can be ``*``)."""

_GRANT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,62}$")
_MAX_PRINCIPAL = 255


class Authorizer(Protocol):
    """Roles and permissions of users on this service's database (see the module docstring)."""

    async def assign_role(
        self, user: str, role: str, database: str, collection: str | None = None
    ) -> bool: ...

    async def remove_role(
        self, user: str, role: str, database: str, collection: str | None = None
    ) -> bool: ...

    async def has_role(self, user: str, role: str, database: str, collection: str | None = None) -> bool: ...

    async def assign_permissions(
        self, user: str, permissions: Iterable[str], database: str, collection: str | None = None
    ) -> bool: ...

    async def remove_permissions(
        self, user: str, permissions: Iterable[str], database: str, collection: str | None = None
    ) -> bool: ...

    async def has_permission(
        self, user: str, permission: str, database: str, collection: str | None = None
    ) -> bool: ...


def check_principal(user: object) -> str:
    """A user id as tokens carry it (``sub``): a non-empty string of at most 255 characters."""
    if not isinstance(user, str) or not user or len(user) > _MAX_PRINCIPAL or "\x00" in user:
        raise ValidationError("a user is a token subject: 1 to 255 characters")
    return user


def check_grant_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not _GRANT_NAME.match(name):
        raise ValidationError(
            f"a {what} name is a letter then up to 62 letters, digits, '_', '.', ':' or '-'",
            {what: name if isinstance(name, str) else repr(name)},
        )
    return name


def check_scope(database: object, collection: object) -> tuple[str, str]:
    """``(database, collection)`` as stored: a database-wide grant has collection ``ALL_COLLECTIONS``."""
    if not isinstance(database, str) or not database:
        raise ValidationError("a database is the name of a service", {"database": repr(database)})
    if collection is None:
        return database, ALL_COLLECTIONS
    return database, check_collection(collection)
