"""In-process DataStore and Authorizer for handler unit tests: no database, the same rules as Postgres.

``MemoryPlatform`` holds what the Postgres schema ``dormant_data`` holds (documents, grants, the audit
trail, applied collection migrations); ``platform.datastore(user, service)`` and
``platform.authorizer(user, service)`` give caller-bound views of it that enforce what row-level security
enforces in Postgres: owners, anonymous shared documents, grants widening access, one service never
seeing another's, the same validation, filter, sort and paging semantics, the same audit records.

One difference: nothing here is transactional. Postgres rolls a call's writes (and their audit records)
back when the call answers an error that is not stored; here they stay.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .authorizer import (
    ALL_COLLECTIONS,
    DATASTORE_ACTIONS,
    ROLE_PERMISSIONS,
    check_grant_name,
    check_principal,
    check_scope,
)
from .context import ANONYMOUS, UserContext
from .datastore import (
    AuditRecord,
    Condition,
    ErasureCounts,
    QueryResult,
    SortKey,
    SortOrder,
    check_collection,
    check_document_id,
    check_page,
    encode_json,
    normalize_document,
    parse_filter,
    parse_sort,
)
from .errors import Conflict, Forbidden
from .migrations import AddColumnToCollection, Migration, PlannedMigration, RemoveColumnFromCollection, plan

__all__ = ["MemoryAuthorizer", "MemoryDataStore", "MemoryPlatform"]

_MISSING: Any = object()
_TYPE_RANK = {type(None): 0, str: 1, int: 2, float: 2, bool: 3, list: 4, dict: 5}


@dataclass(slots=True)
class _Document:
    owner: str | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Grant:
    database: str
    collection: str
    principal: str
    kind: str
    name: str


@dataclass(slots=True)
class MemoryPlatform:
    """The shared state: give each simulated caller its own ``datastore``/``authorizer`` view of it."""

    documents: dict[tuple[str, str, str], _Document] = field(default_factory=dict)
    grants: set[_Grant] = field(default_factory=set)
    audit: list[AuditRecord] = field(default_factory=list)
    applied_migrations: dict[str, dict[int, str]] = field(default_factory=dict)

    def datastore(
        self, user: UserContext = ANONYMOUS, service: str = "test-service", call_id: str = "test-call"
    ) -> MemoryDataStore:
        return MemoryDataStore(self, user=user, service=service, call_id=call_id)

    def authorizer(
        self, user: UserContext = ANONYMOUS, service: str = "test-service", call_id: str = "test-call"
    ) -> MemoryAuthorizer:
        return MemoryAuthorizer(self, user=user, service=service, call_id=call_id)

    def record(self, record: AuditRecord) -> None:
        self.audit.append(record)

    def apply_migrations(
        self, service: str, migrations: Iterable[Migration], target_version: int | None = None
    ) -> list[PlannedMigration]:
        """Run the service's pending migrations on its documents (every owner's), as the runtime does."""
        applied = self.applied_migrations.setdefault(service, {})
        planned = plan(migrations, applied, target_version)
        for step in planned:
            for change in step.steps:
                for (doc_service, collection, _), document in self.documents.items():
                    if doc_service == service and collection == change.collection:
                        _apply_step(change, document.body)
            if step.direction == "up":
                applied[step.migration.version] = step.migration.name
            else:
                del applied[step.migration.version]
            self.record(
                AuditRecord(
                    actor=None,
                    service=service,
                    action=f"migrate_{step.direction}",
                    detail={"version": step.migration.version, "name": step.migration.name},
                    at=_now(),
                )
            )
        return planned

    def erase_user(
        self,
        user_id: str,
        *,
        actor: str | None = None,
        call_id: str | None = None,
        service: str | None = None,
    ) -> ErasureCounts:
        """Remove every document ``user_id`` owns and every grant it holds (in ``service`` only, if given)."""
        user_id = check_principal(user_id)
        doomed = [
            key
            for key, document in self.documents.items()
            if document.owner == user_id and (service is None or key[0] == service)
        ]
        for key in doomed:
            del self.documents[key]
        revoked = {
            g for g in self.grants if g.principal == user_id and (service is None or g.database == service)
        }
        self.grants -= revoked
        counts = ErasureCounts(documents=len(doomed), grants=len(revoked))
        self.record(
            AuditRecord(
                actor=actor,
                service=service,
                action="erase_user",
                detail={"user": user_id, "documents": counts.documents, "grants": counts.grants},
                call_id=call_id,
                at=_now(),
            )
        )
        return counts

    def _granted_collections(self, service: str, user: str | None, action: str) -> set[str]:
        if user is None:
            return set()
        allowing = DATASTORE_ACTIONS[action]
        return {
            g.collection
            for g in self.grants
            if g.database == service
            and g.principal == user
            and (
                (g.kind == "permission" and g.name in allowing)
                or (g.kind == "role" and bool(ROLE_PERMISSIONS.get(g.name, frozenset()) & allowing))
            )
        }


def _apply_step(change: Any, body: dict[str, Any]) -> None:
    if isinstance(change, AddColumnToCollection):
        body.setdefault(change.field, _copy(change.default))
    elif isinstance(change, RemoveColumnFromCollection):
        body.pop(change.field, None)
    elif change.old in body:
        body[change.new] = body.pop(change.old)


class _CallerBound:
    def __init__(self, platform: MemoryPlatform, *, user: UserContext, service: str, call_id: str) -> None:
        self._platform = platform
        self._user = user
        self._service = service
        self._call_id = call_id

    def _audit(
        self, action: str, collection: str | None, document_id: str | None, detail: dict[str, Any]
    ) -> None:
        self._platform.record(
            AuditRecord(
                actor=self._user.user_id,
                service=self._service,
                action=action,
                collection=collection,
                document_id=document_id,
                detail=detail,
                call_id=self._call_id,
                at=_now(),
            )
        )


class MemoryDataStore(_CallerBound):
    """A ``DataStore`` over a ``MemoryPlatform``, bound to one caller and service."""

    def _allowed(self, collection: str, document: _Document, action: str) -> bool:
        sub = self._user.user_id
        if document.owner is None or document.owner == sub:
            return True
        granted = self._platform._granted_collections(self._service, sub, action)
        return ALL_COLLECTIONS in granted or collection in granted

    def _find(self, collection: str, document_id: str, action: str) -> _Document | None:
        document = self._platform.documents.get((self._service, collection, document_id))
        if document is None or not self._allowed(collection, document, action):
            return None
        if action != "read" and not self._allowed(collection, document, "read"):
            return None
        return document

    async def insert(self, collection: str, document: Mapping[str, Any]) -> str:
        check_collection(collection)
        document_id, body = normalize_document(document, allow_id=True)
        document_id = document_id or uuid.uuid4().hex
        key = (self._service, collection, document_id)
        done = key not in self._platform.documents
        if done:
            self._platform.documents[key] = _Document(owner=self._user.user_id, body=body)
        self._audit("insert", collection, document_id, {"done": done})
        if not done:
            raise Conflict(
                "a document with this id already exists in the collection",
                {"collection": collection, "id": document_id},
            )
        return document_id

    async def update(self, collection: str, id: str, fields: Mapping[str, Any]) -> bool:
        check_collection(collection)
        check_document_id(id)
        _, changes = normalize_document(fields, allow_id=False)
        document = self._find(collection, id, "write")
        if document is not None:
            document.body.update(changes)
        self._audit("update", collection, id, {"found": document is not None, "fields": sorted(changes)})
        return document is not None

    async def delete(self, collection: str, id: str) -> bool:
        check_collection(collection)
        check_document_id(id)
        document = self._find(collection, id, "delete")
        if document is not None:
            del self._platform.documents[(self._service, collection, id)]
        self._audit("delete", collection, id, {"found": document is not None})
        return document is not None

    async def get_by_id(self, collection: str, id: str) -> dict[str, Any] | None:
        check_collection(collection)
        check_document_id(id)
        document = self._find(collection, id, "read")
        self._audit("get", collection, id, {"found": document is not None})
        return None if document is None else {**_copy(document.body), "id": id}

    async def query(
        self,
        collection: str,
        filter: Mapping[str, Any] | None = None,
        *,
        sort: Sequence[tuple[str, SortOrder]] = (),
        page: int = 1,
        page_size: int = 100,
    ) -> QueryResult:
        check_collection(collection)
        conditions = parse_filter(filter)
        keys = parse_sort(sort)
        page, page_size = check_page(page, page_size)
        matched = [
            (document_id, document.body)
            for (service, coll, document_id), document in self._platform.documents.items()
            if service == self._service
            and coll == collection
            and self._allowed(collection, document, "read")
            and all(_matches(_value_of(document_id, document.body, c.field), c) for c in conditions)
        ]
        matched.sort(key=functools.cmp_to_key(functools.partial(_compare, keys)))
        start = (page - 1) * page_size
        items = [
            {**_copy(body), "id": document_id} for document_id, body in matched[start : start + page_size]
        ]
        self._audit(
            "query",
            collection,
            None,
            {
                "filter": _filter_detail(conditions),
                "sort": [[k.field, k.order] for k in keys],
                "page": page,
                "page_size": page_size,
                "total": len(matched),
            },
        )
        return QueryResult(items=items, total=len(matched), page=page, page_size=page_size)


class MemoryAuthorizer(_CallerBound):
    """An ``Authorizer`` over a ``MemoryPlatform``, bound to one caller and service."""

    def _may_manage(self, database: str, collection: str) -> bool:
        if self._user.has_role("admin"):
            return True
        sub = self._user.user_id
        return sub is not None and any(
            g.database == database
            and g.principal == sub
            and g.kind == "role"
            and g.name == "admin"
            and g.collection in (ALL_COLLECTIONS, collection)
            for g in self._platform.grants
        )

    def _refusal(self, database: str, collection: str, principal: str | None) -> str | None:
        if database != self._service:
            return "another service's database"
        if principal is not None and principal == self._user.user_id:
            return None
        if not self._may_manage(database, collection):
            return "the caller is not an admin of the database"
        return None

    async def _change(
        self, op: str, user: str, kind: str, names: list[str], database: str, collection: str | None
    ) -> bool:
        user = check_principal(user)
        names = sorted({check_grant_name(n, kind) for n in names})
        database, scope = check_scope(database, collection)
        refusal = self._refusal(database, scope, None)
        changed = 0
        if refusal is None:
            for name in names:
                grant = _Grant(database, scope, user, kind, name)
                if op == "assign" and grant not in self._platform.grants:
                    self._platform.grants.add(grant)
                    changed += 1
                elif op == "remove" and grant in self._platform.grants:
                    self._platform.grants.discard(grant)
                    changed += 1
        self._audit_decision(f"{op}_{kind}", user, names, database, scope, refusal, changed)
        if refusal is not None:
            raise Forbidden(f"may not {op} {kind}s on this database", {"database": database})
        return changed > 0

    async def _check(self, kind: str, user: str, name: str, database: str, collection: str | None) -> bool:
        user = check_principal(user)
        name = check_grant_name(name, kind)
        database, scope = check_scope(database, collection)
        refusal = self._refusal(database, scope, user)
        held = False
        if refusal is None:
            scopes = {ALL_COLLECTIONS, scope}
            for g in self._platform.grants:
                if g.database != database or g.principal != user or g.collection not in scopes:
                    continue
                if g.kind == kind and g.name == name:
                    held = True
                elif kind == "permission" and g.kind == "role" and name in ROLE_PERMISSIONS.get(g.name, ()):
                    held = True
        self._audit_decision(f"has_{kind}", user, [name], database, scope, refusal, int(held))
        if refusal is not None:
            raise Forbidden(f"may not check this user's {kind}s on this database", {"database": database})
        return held

    def _audit_decision(
        self,
        action: str,
        principal: str,
        names: list[str],
        database: str,
        scope: str,
        refusal: str | None,
        result: int,
    ) -> None:
        self._audit(
            action,
            None if scope == ALL_COLLECTIONS else scope,
            None,
            {
                "principal": principal,
                "names": names,
                "database": database,
                "allowed": refusal is None,
                "reason": refusal,
                "result": result,
            },
        )

    async def assign_role(self, user: str, role: str, database: str, collection: str | None = None) -> bool:
        return await self._change("assign", user, "role", [role], database, collection)

    async def remove_role(self, user: str, role: str, database: str, collection: str | None = None) -> bool:
        return await self._change("remove", user, "role", [role], database, collection)

    async def has_role(self, user: str, role: str, database: str, collection: str | None = None) -> bool:
        return await self._check("role", user, role, database, collection)

    async def assign_permissions(
        self, user: str, permissions: Iterable[str], database: str, collection: str | None = None
    ) -> bool:
        return await self._change("assign", user, "permission", _names(permissions), database, collection)

    async def remove_permissions(
        self, user: str, permissions: Iterable[str], database: str, collection: str | None = None
    ) -> bool:
        return await self._change("remove", user, "permission", _names(permissions), database, collection)

    async def has_permission(
        self, user: str, permission: str, database: str, collection: str | None = None
    ) -> bool:
        return await self._check("permission", user, permission, database, collection)


def _names(permissions: Iterable[str]) -> list[str]:
    if isinstance(permissions, str):
        return [permissions]
    return list(permissions)


def _now() -> datetime:
    return datetime.now(UTC)


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _value_of(document_id: str, body: Mapping[str, Any], name: str) -> Any:
    return document_id if name == "id" else body.get(name, _MISSING)


def _kind(value: Any) -> int:
    return _TYPE_RANK[type(value)]


def json_equal(left: Any, right: Any) -> bool:
    """Equality as jsonb has it: same JSON type (true is not 1), numbers by value, containers deeply."""
    if _kind(left) != _kind(right):
        return False
    if isinstance(left, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    return bool(left == right)


def _matches(value: Any, condition: Condition) -> bool:
    op, operand = condition.op, condition.value
    present = value is not _MISSING
    if op == "$exists":
        return present is bool(operand)
    if op == "$eq":
        return present and json_equal(value, operand)
    if op == "$ne":
        return not (present and json_equal(value, operand))
    if op == "$in":
        return present and any(json_equal(value, item) for item in operand)
    if op == "$nin":
        return not (present and any(json_equal(value, item) for item in operand))
    if not present or _kind(value) != _kind(operand):
        return False
    if op == "$gt":
        return bool(value > operand)
    if op == "$gte":
        return bool(value >= operand)
    if op == "$lt":
        return bool(value < operand)
    return bool(value <= operand)


def _filter_detail(conditions: list[Condition]) -> list[list[Any]]:
    return [[c.field, c.op, c.value] for c in conditions]


def _compare_values(left: Any, right: Any) -> int:
    rank_left, rank_right = _kind(left), _kind(right)
    if rank_left != rank_right:
        return -1 if rank_left < rank_right else 1
    if isinstance(left, list | dict):
        left, right = encode_json(left), encode_json(right)
    if left == right or left is None:
        return 0
    return -1 if left < right else 1


def _compare(keys: list[SortKey], left: tuple[str, dict[str, Any]], right: tuple[str, dict[str, Any]]) -> int:
    for key in keys:
        a, b = _value_of(left[0], left[1], key.field), _value_of(right[0], right[1], key.field)
        if a is _MISSING or b is _MISSING:  # missing sorts last in both directions
            if a is _MISSING and b is _MISSING:
                continue
            return 1 if a is _MISSING else -1
        order = _compare_values(a, b)
        if order:
            return order if key.order == "asc" else -order
    return -1 if left[0] < right[0] else (1 if left[0] > right[0] else 0)
