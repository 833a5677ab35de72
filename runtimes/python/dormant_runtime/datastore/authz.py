"""``PostgresAuthorizer``: the SDK's ``Authorizer`` over ``dormant_data.grants``, as the caller.

The rules (who may assign, remove and check, and what a grant allows) are in ``dormant.authorizer``'s
docstring; they are enforced in the database by the SECURITY DEFINER functions ``change_grants`` and
``check_grant`` (``schema.py``), which the caller role may execute but whose tables it cannot touch.
Those functions write the audit record and answer -1 for a refusal instead of raising, so a refused
call leaves the transaction usable and its audit record in it; this module turns -1 into ``Forbidden``.
Like the DataStore, each call enters the caller's role first, in the same round trip.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dormant.authorizer import check_grant_name, check_principal, check_scope
from dormant.context import UserContext
from dormant.errors import Forbidden

from .store import Begin, caller_connection, enter_caller_role


class PostgresAuthorizer:
    """The caller-bound ``Authorizer`` (``dormant.authorizer``) for one service's database."""

    def __init__(self, begin: Begin, *, user: UserContext, service: str, call_id: str) -> None:
        self._begin = begin
        self._user = user
        self._service = service
        self._call_id = call_id

    def __repr__(self) -> str:
        return f"PostgresAuthorizer(service={self._service!r}, user={self._user.user_id!r})"

    async def _call(self, query: str, params: tuple[Any, ...]) -> int:
        conn = await caller_connection(self._begin)
        async with conn.pipeline():
            await enter_caller_role(conn, self._user, self._service, self._call_id)
            cursor = await conn.execute(query, params)
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def _change(
        self, op: str, user: str, kind: str, names: Iterable[str], database: str, collection: str | None
    ) -> bool:
        user = check_principal(user)
        listed = sorted({check_grant_name(name, kind) for name in _names(names)})
        database, scope = check_scope(database, collection)
        changed = await self._call(
            "SELECT dormant_data.change_grants(%s, %s, %s, %s::text[], %s, %s)",
            (op, user, kind, listed, database, scope),
        )
        if changed < 0:
            raise Forbidden(f"may not {op} {kind}s on this database", {"database": database})
        return changed > 0

    async def _check(self, kind: str, user: str, name: str, database: str, collection: str | None) -> bool:
        user = check_principal(user)
        name = check_grant_name(name, kind)
        database, scope = check_scope(database, collection)
        held = await self._call(
            "SELECT dormant_data.check_grant(%s, %s, %s, %s, %s)", (kind, user, name, database, scope)
        )
        if held < 0:
            raise Forbidden(f"may not check this user's {kind}s on this database", {"database": database})
        return held > 0

    async def assign_role(self, user: str, role: str, database: str, collection: str | None = None) -> bool:
        return await self._change("assign", user, "role", [role], database, collection)

    async def remove_role(self, user: str, role: str, database: str, collection: str | None = None) -> bool:
        return await self._change("remove", user, "role", [role], database, collection)

    async def has_role(self, user: str, role: str, database: str, collection: str | None = None) -> bool:
        return await self._check("role", user, role, database, collection)

    async def assign_permissions(
        self, user: str, permissions: Iterable[str], database: str, collection: str | None = None
    ) -> bool:
        return await self._change("assign", user, "permission", permissions, database, collection)

    async def remove_permissions(
        self, user: str, permissions: Iterable[str], database: str, collection: str | None = None
    ) -> bool:
        return await self._change("remove", user, "permission", permissions, database, collection)

    async def has_permission(
        self, user: str, permission: str, database: str, collection: str | None = None
    ) -> bool:
        return await self._check("permission", user, permission, database, collection)


def _names(names: Iterable[str]) -> Iterable[str]:
    return [names] if isinstance(names, str) else names
