"""``DataStore``: the document store a handler gets (the seed's ``IDataStore``), and its value types.

A DataStore is bound to one caller (a ``UserContext``) and one service. Documents are JSON objects in
named collections; every document has a string ``id`` (generated, 32 hex digits, unless the inserted
document carries one). What a caller may see and change is decided by the store, never by the handler:

- a document is **owned** by the user who inserted it (the token's ``sub``); its owner may read,
  update and delete it;
- other users reach it only through a grant made with the ``Authorizer`` on the service's database (or
  on that collection): see ``dormant.authorizer`` for which roles and permissions allow what;
- documents inserted by an **anonymous** caller (no token: a service whose authentication is off or
  optional) have no owner and are shared by every caller of that service, anonymous or not;
- a service never sees another service's documents.

So a handler that queries with no filter still gets only what its caller may read, and ``total``
counts only those. Every access (insert, update, delete, get, query) is written to the audit trail
within the call's transaction.

Operations (all ``async``):

- ``insert(collection, document) -> id``: the document is stored as given (its ``id`` key, when present,
  becomes the id and is not stored in the body); an id already used in the collection raises
  ``Conflict``.
- ``update(collection, id, fields) -> bool``: **merges** ``fields`` into the document (top-level keys are
  replaced, others kept; a value ``None`` stores JSON null, it does not remove the key); False when no
  document with that id is visible and updatable by the caller.
- ``delete(collection, id) -> bool``: False when no such document is visible and deletable.
- ``get_by_id(collection, id) -> dict | None``: the document with its ``id`` key, or None.
- ``query(collection, filter=None, *, sort=(), page=1, page_size=100) -> QueryResult``.

Update and delete take an id (not the seed's query form): a write through a filter is one typo away
from changing every document the caller may change.

Filters are a small JSON-able language over top-level fields (and ``id``), every field's conditions
ANDed: ``{"name": "Ann"}`` (equality; ``None`` matches an explicit JSON null, not a missing key),
``{"age": {"$gt": 3, "$lte": 9}}`` (``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, ``$in``,
``$nin``, ``$exists``). ``$ne`` and ``$nin`` match documents without the field. Order comparisons take a
number or a string and only match values of the same JSON type (strings compare by code point). A
dict value whose keys all start with ``$`` is an operator spec; any other dict is a literal object.

Sort is a sequence of ``(field, "asc" | "desc")``; documents missing the field come last either way,
values of different JSON types order null < string < number < boolean < array < object, and ties are
broken by id. Pages are numbered from 1; ``page_size`` is at most ``MAX_PAGE_SIZE``.

Collection and field names match ``^[a-z][a-z0-9_]{0,62}$``; anything else is a ``ValidationError``, as
is a document that is not a JSON object of JSON values (no NaN or infinity, no NUL characters).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import orjson

from .errors import ValidationError

__all__ = [
    "MAX_PAGE_SIZE",
    "OPERATORS",
    "AuditRecord",
    "Condition",
    "DataStore",
    "ErasureCounts",
    "QueryResult",
    "SortKey",
    "SortOrder",
    "check_collection",
    "check_document_id",
    "check_field",
    "check_page",
    "encode_json",
    "normalize_document",
    "normalize_value",
    "parse_filter",
    "parse_sort",
]

MAX_PAGE_SIZE = 1000
MAX_NESTING = 64

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_DOCUMENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

SortOrder = Literal["asc", "desc"]
OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"})
_ORDERING = frozenset({"$gt", "$gte", "$lt", "$lte"})


@dataclass(frozen=True, slots=True)
class QueryResult:
    """One page of a query: the documents (each with its ``id``) and how many match in all."""

    items: list[dict[str, Any]]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        """How many pages of ``page_size`` the matching documents fill."""
        return (self.total + self.page_size - 1) // self.page_size


@dataclass(frozen=True, slots=True)
class Condition:
    """One parsed filter condition: ``field`` (``id`` or a top-level key), an operator, its operand."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class SortKey:
    field: str
    order: SortOrder


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One entry of the audit trail: who (``actor``, the caller's ``sub``; None when anonymous or the
    runtime itself), which service, collection and document, what (``action``), in which call, when."""

    actor: str | None
    service: str | None
    action: str
    collection: str | None = None
    document_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    call_id: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ErasureCounts:
    """What erasing a user removed: the documents it owned and the grants it held."""

    documents: int
    grants: int


class DataStore(Protocol):
    """The caller-bound document store (see the module docstring for the rules it enforces)."""

    async def insert(self, collection: str, document: Mapping[str, Any]) -> str:
        """Store ``document``; return its id."""
        ...

    async def update(self, collection: str, id: str, fields: Mapping[str, Any]) -> bool:
        """Merge ``fields`` into the document; False when the caller has no such document to update."""
        ...

    async def delete(self, collection: str, id: str) -> bool:
        """Delete the document; False when the caller has no such document to delete."""
        ...

    async def get_by_id(self, collection: str, id: str) -> dict[str, Any] | None:
        """The document (with its ``id``), or None when the caller cannot see one with that id."""
        ...

    async def query(
        self,
        collection: str,
        filter: Mapping[str, Any] | None = None,
        *,
        sort: Sequence[tuple[str, SortOrder]] = (),
        page: int = 1,
        page_size: int = 100,
    ) -> QueryResult:
        """One page of the documents the caller can read that match ``filter``."""
        ...


def check_collection(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            "a collection name is a lowercase letter then up to 62 lowercase letters, digits or '_'",
            {"collection": name if isinstance(name, str) else repr(name)},
        )
    return name


def check_field(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            "a field name is a lowercase letter then up to 62 lowercase letters, digits or '_'",
            {"field": name if isinstance(name, str) else repr(name)},
        )
    return name


def check_document_id(value: object) -> str:
    if not isinstance(value, str) or not _DOCUMENT_ID.match(value):
        raise ValidationError(
            "a document id is 1 to 128 letters, digits, '_', '.', ':' or '-', starting with a letter"
            " or digit",
            {"id": value if isinstance(value, str) else repr(value)},
        )
    return value


def check_page(page: object, page_size: object) -> tuple[int, int]:
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise ValidationError("page numbers start at 1", {"page": repr(page)})
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError(
            f"page_size is from 1 to {MAX_PAGE_SIZE}", {"page_size": repr(page_size), "max": MAX_PAGE_SIZE}
        )
    return page, page_size


def normalize_value(value: Any, *, where: str = "value") -> Any:
    """A deep copy of ``value`` made of JSON types only (dict with str keys, list, str, int, float, bool,
    None); ``ValidationError`` for anything Postgres' jsonb could not hold the same way."""
    return _normalize(value, where, 0)


def _normalize(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_NESTING:
        raise ValidationError(f"{where} is nested deeper than {MAX_NESTING} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValidationError(f"{where} holds an integer outside 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{where} holds NaN or infinity, which JSON cannot carry")
        return value
    if isinstance(value, str):
        if "\x00" in value:
            raise ValidationError(f"{where} holds a NUL character")
        return value
    if isinstance(value, Mapping):
        copy: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or "\x00" in key:
                raise ValidationError(f"{where} has a key that is not a string: {key!r}")
            copy[key] = _normalize(item, where, depth + 1)
        return copy
    if isinstance(value, list | tuple):
        return [_normalize(item, where, depth + 1) for item in value]
    raise ValidationError(f"{where} holds a {type(value).__name__}, which is not a JSON value")


def normalize_document(document: object, *, allow_id: bool) -> tuple[str | None, dict[str, Any]]:
    """Split a document into its id (when it carries one and ``allow_id``) and its normalized body."""
    if not isinstance(document, Mapping):
        raise ValidationError("a document is a JSON object", {"got": type(document).__name__})
    body: dict[str, Any] = normalize_value(document, where="the document")
    document_id = None
    if "id" in body:
        if not allow_id:
            raise ValidationError("a document's id cannot be changed")
        document_id = check_document_id(body.pop("id"))
    return document_id, body


def encode_json(value: Any) -> str:
    """JSON text of an already normalized value."""
    return orjson.dumps(value).decode()


def parse_filter(filter: Mapping[str, Any] | None) -> list[Condition]:
    """The conditions of a filter, validated (see the module docstring for the language)."""
    if filter is None:
        return []
    if not isinstance(filter, Mapping):
        raise ValidationError("a filter is a JSON object of field → value or {operator: operand}")
    conditions: list[Condition] = []
    for name, spec in filter.items():
        name = "id" if name == "id" else check_field(name)
        if isinstance(spec, Mapping) and spec and all(isinstance(k, str) and k.startswith("$") for k in spec):
            for op, operand in spec.items():
                conditions.append(_condition(name, op, operand))
        else:
            if isinstance(spec, Mapping) and any(isinstance(k, str) and k.startswith("$") for k in spec):
                raise ValidationError(
                    "a filter value mixes operators and fields",
                    {"field": name, "keys": sorted(map(str, spec))},
                )
            conditions.append(Condition(name, "$eq", normalize_value(spec, where=f"the filter on {name}")))
    return conditions


def _condition(name: str, op: str, operand: Any) -> Condition:
    if op not in OPERATORS:
        raise ValidationError(
            f"unknown filter operator {op!r}", {"field": name, "operators": sorted(OPERATORS)}
        )
    where = f"the filter {op} on {name}"
    if op == "$exists":
        if not isinstance(operand, bool):
            raise ValidationError(f"{where} takes true or false")
        return Condition(name, op, operand)
    if op in _ORDERING:
        if isinstance(operand, bool) or not isinstance(operand, int | float | str):
            raise ValidationError(f"{where} takes a number or a string")
        return Condition(name, op, normalize_value(operand, where=where))
    if op in ("$in", "$nin"):
        if not isinstance(operand, list | tuple):
            raise ValidationError(f"{where} takes a list of values")
        return Condition(name, op, normalize_value(list(operand), where=where))
    return Condition(name, op, normalize_value(operand, where=where))


def parse_sort(sort: Sequence[tuple[str, SortOrder]] | None) -> list[SortKey]:
    if not sort:
        return []
    if isinstance(sort, str) or not isinstance(sort, Sequence):
        raise ValidationError('sort is a list of (field, "asc" | "desc") pairs')
    keys: list[SortKey] = []
    for entry in sort:
        if not isinstance(entry, list | tuple) or len(entry) != 2 or entry[1] not in ("asc", "desc"):
            raise ValidationError('sort is a list of (field, "asc" | "desc") pairs', {"entry": repr(entry)})
        name = "id" if entry[0] == "id" else check_field(entry[0])
        keys.append(SortKey(name, entry[1]))
    return keys
