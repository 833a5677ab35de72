"""``PostgresDataStore``: the SDK's ``DataStore`` over ``dormant_data.documents``, as the caller.

Every operation runs in the call's transaction (``begin()`` returns the same open connection for the
whole call; nothing here commits) and is sent as one pipelined round trip of two statements:

1. ``enter_caller_role``: ``SET LOCAL ROLE dormant_fn`` (as ``set_config('role', …, true)``) and the
   transaction-local settings the row-level security policies read: ``request.jwt.claims`` (sub, email,
   roles, groups), ``dormant.service`` and ``dormant.call_id``. It is sent before *every* operation,
   not only the first of a transaction, so no statement of this module can run with the runtime's own
   privileges, whatever happened to the transaction in between.
2. the operation, with its audit record written by a data-modifying CTE of the same statement.

Which documents a statement sees is decided by the policies, not by the SQL here: the ``WHERE`` clauses
below only narrow to the collection, id or filter. All values, field names included, are parameters;
the statement's shape comes only from fixed fragments chosen by validated operators.

The runtime calls ``leave_caller_role(conn)`` before it writes its own rows (the call's stored answer)
in the same transaction. A connection in autocommit mode is refused: there the role would not outlive
its own statement.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import orjson
import psycopg

from dormant.context import UserContext
from dormant.datastore import (
    Condition,
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
from dormant.errors import Conflict, SystemError

from .schema import CALLER_ROLE

Conn = psycopg.AsyncConnection[Any]
Begin = Callable[[], Awaitable[Conn]]

_ENTER: str = (
    f"SELECT set_config('role', '{CALLER_ROLE}', true), set_config('request.jwt.claims', %s, true),"
    " set_config('dormant.service', %s, true), set_config('dormant.call_id', %s, true)"
)
_LEAVE: str = (
    "SELECT set_config('role', 'none', true), set_config('request.jwt.claims', '', true),"
    " set_config('dormant.service', '', true), set_config('dormant.call_id', '', true)"
)


def claims_json(user: UserContext) -> str:
    """The claims the policies read (the token itself is never put in the database)."""
    return encode_json(
        {"sub": user.user_id, "email": user.email, "roles": list(user.roles), "groups": list(user.groups)}
    )


async def enter_caller_role(conn: Conn, user: UserContext, service: str, call_id: str) -> None:
    """Switch the transaction to the caller: ``dormant_fn`` with the caller's claims, until it ends."""
    await conn.execute(_ENTER, (claims_json(user), service, call_id))


async def leave_caller_role(conn: Conn) -> None:
    """Back to the runtime's own role (``RESET ROLE``, transaction-local) with the claims cleared, for
    the rest of the transaction; one statement. Harmless when the caller role was never entered."""
    await conn.execute(_LEAVE)


async def caller_connection(begin: Begin) -> Conn:
    """The call's connection; ``SystemError`` if it is in autocommit mode, where the transaction-local
    role and claims would end with their own statement and the next one would run unrestricted."""
    conn = await begin()
    if conn.autocommit:
        raise SystemError("the DataStore needs the call's transaction, not an autocommit connection")
    return conn


class PostgresDataStore:
    """The caller-bound ``DataStore`` (``dormant.datastore``) over the ``dormant_data`` schema."""

    def __init__(self, begin: Begin, *, user: UserContext, service: str, call_id: str) -> None:
        self._begin = begin
        self._user = user
        self._service = service
        self._call_id = call_id

    def __repr__(self) -> str:
        return f"PostgresDataStore(service={self._service!r}, user={self._user.user_id!r})"

    async def _run(self, query: str, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Enter the caller's role and run ``query`` in one round trip; its first row."""
        conn = await caller_connection(self._begin)
        async with conn.pipeline():
            await enter_caller_role(conn, self._user, self._service, self._call_id)
            cursor = await conn.execute(query, params)
            return await cursor.fetchone()

    async def insert(self, collection: str, document: Mapping[str, Any]) -> str:
        check_collection(collection)
        document_id, body = normalize_document(document, allow_id=True)
        document_id = document_id or uuid.uuid4().hex
        row = await self._run(
            "WITH ins AS ("
            "  INSERT INTO dormant_data.documents (service, collection, id, owner, body)"
            "  VALUES (%(service)s, %(collection)s, %(id)s, dormant_data.claim_sub(), %(body)s::jsonb)"
            "  ON CONFLICT DO NOTHING RETURNING 1),"
            " audit AS ("
            "  INSERT INTO dormant_data.audit (action, collection, document_id, detail)"
            "  SELECT 'insert', %(collection)s, %(id)s, jsonb_build_object('done', EXISTS (SELECT FROM ins)))"
            " SELECT EXISTS (SELECT FROM ins)",
            {
                "service": self._service,
                "collection": collection,
                "id": document_id,
                "body": encode_json(body),
            },
        )
        if not (row and row[0]):
            raise Conflict(
                "a document with this id already exists in the collection",
                {"collection": collection, "id": document_id},
            )
        return document_id

    async def update(self, collection: str, id: str, fields: Mapping[str, Any]) -> bool:
        check_collection(collection)
        check_document_id(id)
        _, changes = normalize_document(fields, allow_id=False)
        row = await self._run(
            "WITH changed AS ("
            "  UPDATE dormant_data.documents SET body = body || %(fields)s::jsonb, updated_at = now()"
            "  WHERE service = %(service)s AND collection = %(collection)s AND id = %(id)s RETURNING 1),"
            " audit AS ("
            "  INSERT INTO dormant_data.audit (action, collection, document_id, detail)"
            "  SELECT 'update', %(collection)s, %(id)s, jsonb_build_object("
            "    'found', EXISTS (SELECT FROM changed), 'fields', %(names)s::jsonb))"
            " SELECT EXISTS (SELECT FROM changed)",
            {
                "service": self._service,
                "collection": collection,
                "id": id,
                "fields": encode_json(changes),
                "names": encode_json(sorted(changes)),
            },
        )
        return bool(row and row[0])

    async def delete(self, collection: str, id: str) -> bool:
        check_collection(collection)
        check_document_id(id)
        row = await self._run(
            "WITH gone AS ("
            "  DELETE FROM dormant_data.documents"
            "  WHERE service = %(service)s AND collection = %(collection)s AND id = %(id)s RETURNING 1),"
            " audit AS ("
            "  INSERT INTO dormant_data.audit (action, collection, document_id, detail)"
            "  SELECT 'delete', %(collection)s, %(id)s,"
            "    jsonb_build_object('found', EXISTS (SELECT FROM gone)))"
            " SELECT EXISTS (SELECT FROM gone)",
            {"service": self._service, "collection": collection, "id": id},
        )
        return bool(row and row[0])

    async def get_by_id(self, collection: str, id: str) -> dict[str, Any] | None:
        check_collection(collection)
        check_document_id(id)
        row = await self._run(
            "WITH found AS ("
            "  SELECT body FROM dormant_data.documents"
            "  WHERE service = %(service)s AND collection = %(collection)s AND id = %(id)s),"
            " audit AS ("
            "  INSERT INTO dormant_data.audit (action, collection, document_id, detail)"
            "  SELECT 'get', %(collection)s, %(id)s, jsonb_build_object('found', EXISTS (SELECT FROM found)))"
            " SELECT (SELECT body FROM found)",
            {"service": self._service, "collection": collection, "id": id},
        )
        if row is None or row[0] is None:
            return None
        document: dict[str, Any] = _json(row[0])
        document["id"] = id
        return document

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
        params: dict[str, Any] = {
            "service": self._service,
            "collection": collection,
            "limit": page_size,
            "offset": (page - 1) * page_size,
            "detail": encode_json(
                {
                    "filter": [[c.field, c.op, c.value] for c in conditions],
                    "sort": [[k.field, k.order] for k in keys],
                    "page": page,
                    "page_size": page_size,
                }
            ),
        }
        where = _where(conditions, params)
        order = _order_by(keys, params)
        # One statement, one snapshot: the count and the page come from the same policy-filtered rows.
        row = await self._run(
            "WITH matched AS MATERIALIZED ("
            "  SELECT id, body FROM dormant_data.documents"
            "  WHERE service = %(service)s AND collection = %(collection)s" + where + "),"
            " audit AS ("
            "  INSERT INTO dormant_data.audit (action, collection, detail)"
            "  SELECT 'query', %(collection)s,"
            "    %(detail)s::jsonb || jsonb_build_object('total', (SELECT count(*) FROM matched)))"
            " SELECT (SELECT count(*) FROM matched),"
            "  (SELECT coalesce(jsonb_agg(body || jsonb_build_object('id', id) ORDER BY " + order + "), '[]')"
            "   FROM (SELECT id, body FROM matched ORDER BY "
            + order
            + " LIMIT %(limit)s OFFSET %(offset)s) AS p)",
            params,
        )
        assert row is not None
        return QueryResult(items=_json(row[1]), total=int(row[0]), page=page, page_size=page_size)


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _value_sql(name: str, params: dict[str, Any]) -> str:
    """SQL for a field's jsonb value (SQL NULL when the document lacks it); the name is a parameter."""
    if name == "id":
        return "to_jsonb(id)"
    key = f"f{len(params)}"
    params[key] = name
    return "(body -> %(" + key + ")s::text)"


def _param(value: Any, params: dict[str, Any]) -> str:
    key = f"v{len(params)}"
    params[key] = value
    return "%(" + key + ")s"


_COMPARISONS: dict[str, str] = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _condition_sql(condition: Condition, params: dict[str, Any]) -> str:
    value = _value_sql(condition.field, params)
    op, operand = condition.op, condition.value
    if op == "$exists":
        return value + (" IS NOT NULL" if operand else " IS NULL")
    if op == "$eq":
        return value + " = " + _param(encode_json(operand), params) + "::jsonb"
    if op == "$ne":
        return value + " IS DISTINCT FROM " + _param(encode_json(operand), params) + "::jsonb"
    if op in ("$in", "$nin"):
        listed = value + " = ANY (" + _param([encode_json(v) for v in operand], params) + "::text[]::jsonb[])"
        return ("coalesce(" if op == "$in" else "NOT coalesce(") + listed + ", false)"
    comparison = _COMPARISONS[op]
    # CASE guarantees the cast only sees values of the right JSON type (AND would not).
    if isinstance(operand, str):
        return (
            "CASE WHEN jsonb_typeof("
            + value
            + ") = 'string' THEN ("
            + value
            + " #>> '{}') COLLATE \"C\" "
            + comparison
            + " "
            + _param(operand, params)
            + "::text ELSE false END"
        )
    return (
        "CASE WHEN jsonb_typeof("
        + value
        + ") = 'number' THEN ("
        + value
        + " #>> '{}')::numeric "
        + comparison
        + " "
        + _param(encode_json(operand), params)
        + "::numeric ELSE false END"
    )


def _where(conditions: list[Condition], params: dict[str, Any]) -> str:
    where: str = ""
    for condition in conditions:
        where += " AND " + _condition_sql(condition, params)
    return where


def _order_by(keys: list[SortKey], params: dict[str, Any]) -> str:
    """ORDER BY terms: per key, the JSON type's rank (missing last), then the value within its type."""
    terms: list[str] = []
    for key in keys:
        value = _value_sql(key.field, params)
        direction: str = "ASC" if key.order == "asc" else "DESC"
        terms.append(
            "CASE jsonb_typeof(" + value + ") WHEN 'null' THEN 0 WHEN 'string' THEN 1 WHEN 'number' THEN 2"
            " WHEN 'boolean' THEN 3 WHEN 'array' THEN 4 WHEN 'object' THEN 5 END " + direction + " NULLS LAST"
        )
        terms.append(
            "CASE WHEN jsonb_typeof("
            + value
            + ") = 'string' THEN ("
            + value
            + " #>> '{}') END COLLATE \"C\" "
            + direction
        )
        terms.append(
            "CASE WHEN jsonb_typeof("
            + value
            + ") = 'number' THEN ("
            + value
            + " #>> '{}')::numeric END "
            + direction
        )
        terms.append(
            "CASE WHEN jsonb_typeof("
            + value
            + ") = 'boolean' THEN ("
            + value
            + " #>> '{}')::boolean END "
            + direction
        )
        terms.append(
            "CASE WHEN jsonb_typeof(" + value + ") IN ('array', 'object') THEN " + value + "::text END "
            'COLLATE "C" ' + direction
        )
    terms.append('id COLLATE "C"')
    return ", ".join(terms)
