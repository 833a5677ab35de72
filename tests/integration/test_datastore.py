"""The DataStore and Authorizer in a real Postgres: row-level security from the caller's claims, grants,
the audit trail, the caller role's isolation from the catalog, migrations, erasure, and parity of query
semantics with the in-memory implementation handlers are unit-tested against.

One private database per module (catalog migrations and ``dormant_data`` applied); each test uses its
own service name, so tests do not see each other's documents.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from dormant._memory_platform import MemoryPlatform
from dormant.context import ANONYMOUS, UserContext
from dormant.errors import Conflict, Forbidden, SystemError, ValidationError
from dormant.migrations import (
    AddColumnToCollection,
    Migration,
    RemoveColumnFromCollection,
    RenameColumnInCollection,
)
from dormant_catalog.migrate import migrate
from dormant_local import ExternalPostgres, LocalPostgres
from dormant_runtime.datastore import (
    PostgresAuthorizer,
    PostgresDataStore,
    apply_migrations,
    ensure_schema,
    erase_user,
    leave_caller_role,
    read_audit,
)
from dormant_runtime.datastore.store import enter_caller_role

Conn = psycopg.AsyncConnection[Any]

ALICE = UserContext(user_id="alice", email="alice@example.com", roles=("user",))
BOB = UserContext(user_id="bob", email="bob@example.com")
ADMIN = UserContext(user_id="root", roles=("admin",))


@pytest_asyncio.fixture(scope="module")
async def data_db(pg: LocalPostgres | ExternalPostgres) -> AsyncIterator[str]:
    name = f"dormant_ds_{uuid.uuid4().hex[:12]}"
    url = await pg.create_database(name, exist_ok=False)
    try:
        await migrate(url)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await ensure_schema(conn)
            await ensure_schema(conn)  # idempotent
        yield url
    finally:
        await pg.drop_database(name)


@pytest_asyncio.fixture
async def db(data_db: str) -> AsyncIterator[Conn]:
    """An autocommit connection as the runtime (a superuser here), for setup and inspection."""
    async with await psycopg.AsyncConnection.connect(data_db, autocommit=True) as conn:
        yield conn


@pytest.fixture
def service() -> str:
    return f"svc-{uuid.uuid4().hex[:10]}"


class Call:
    """One call's transaction: a connection with a transaction open, committed or rolled back at the end."""

    def __init__(self, url: str, service: str, user: UserContext) -> None:
        self.url, self.service, self.user = url, service, user
        self.call_id = f"call-{uuid.uuid4().hex[:12]}"
        self.conn: Conn | None = None

    async def begin(self) -> Conn:
        if self.conn is None:
            self.conn = await psycopg.AsyncConnection.connect(self.url, autocommit=False)
        return self.conn

    @property
    def data(self) -> PostgresDataStore:
        return PostgresDataStore(self.begin, user=self.user, service=self.service, call_id=self.call_id)

    @property
    def authz(self) -> PostgresAuthorizer:
        return PostgresAuthorizer(self.begin, user=self.user, service=self.service, call_id=self.call_id)

    async def end(self, *, commit: bool = True) -> None:
        if self.conn is not None:
            if commit:
                await self.conn.commit()
            else:
                await self.conn.rollback()
            await self.conn.close()
            self.conn = None


async def run(url: str, service: str, user: UserContext, action: Any) -> Any:
    """Run ``action(call)`` in one committed call as ``user``."""
    call = Call(url, service, user)
    try:
        result = await action(call)
    except BaseException:
        await call.end(commit=False)
        raise
    await call.end(commit=True)
    return result


async def test_a_user_cannot_reach_another_users_documents_even_with_no_filter(
    data_db: str, db: Conn, service: str
) -> None:
    doc_id = await run(data_db, service, ALICE, lambda c: c.data.insert("notes", {"text": "alice's", "n": 1}))

    async def bob_tries(call: Call) -> None:
        everything = await call.data.query("notes")
        assert (everything.items, everything.total) == ([], 0)
        assert await call.data.get_by_id("notes", doc_id) is None
        assert await call.data.update("notes", doc_id, {"text": "bob was here"}) is False
        assert await call.data.delete("notes", doc_id) is False

    await run(data_db, service, BOB, bob_tries)
    mine = await run(data_db, service, ALICE, lambda c: c.data.get_by_id("notes", doc_id))
    assert mine == {"id": doc_id, "text": "alice's", "n": 1}

    # A grant of `read` on the collection: bob reads, still cannot change or delete.
    granted = await run(
        data_db, service, ADMIN, lambda c: c.authz.assign_permissions("bob", ["read"], service, "notes")
    )
    assert granted is True

    async def bob_reads(call: Call) -> None:
        assert await call.data.get_by_id("notes", doc_id) == {"id": doc_id, "text": "alice's", "n": 1}
        assert (await call.data.query("notes")).total == 1
        assert await call.data.update("notes", doc_id, {"text": "bob was here"}) is False
        assert await call.data.delete("notes", doc_id) is False

    await run(data_db, service, BOB, bob_reads)
    # The role `writer` on the whole database lets him update; only `delete`/`admin` deletes.
    await run(data_db, service, ADMIN, lambda c: c.authz.assign_role("bob", "writer", service))

    async def bob_writes(call: Call) -> None:
        assert await call.data.update("notes", doc_id, {"text": "edited"}) is True
        assert await call.data.delete("notes", doc_id) is False

    await run(data_db, service, BOB, bob_writes)
    assert (await run(data_db, service, ALICE, lambda c: c.data.get_by_id("notes", doc_id)))[
        "text"
    ] == "edited"

    # Another service never sees this one's documents, grants or not.
    other = f"{service}-other"
    assert (await run(data_db, other, ALICE, lambda c: c.data.query("notes"))).total == 0
    assert await run(data_db, other, ALICE, lambda c: c.data.get_by_id("notes", doc_id)) is None

    await run(data_db, service, ADMIN, lambda c: c.authz.assign_permissions("bob", ["delete"], service))
    assert await run(data_db, service, BOB, lambda c: c.data.delete("notes", doc_id)) is True


async def test_anonymous_documents_are_shared_by_every_caller_of_the_service(
    data_db: str, service: str
) -> None:
    doc_id = await run(data_db, service, ANONYMOUS, lambda c: c.data.insert("board", {"msg": "hi"}))
    assert await run(data_db, service, BOB, lambda c: c.data.get_by_id("board", doc_id)) == {
        "id": doc_id,
        "msg": "hi",
    }
    assert await run(data_db, service, ALICE, lambda c: c.data.update("board", doc_id, {"msg": "yo"})) is True
    # An anonymous caller cannot see a user's own documents.
    await run(data_db, service, ALICE, lambda c: c.data.insert("board", {"id": "alices", "msg": "mine"}))
    seen = await run(data_db, service, ANONYMOUS, lambda c: c.data.query("board", sort=[("msg", "asc")]))
    assert [item["msg"] for item in seen.items] == ["yo"]


async def test_every_access_is_audited_in_the_calls_transaction(data_db: str, db: Conn, service: str) -> None:
    call = Call(data_db, service, ALICE)
    doc_id = await call.data.insert("items", {"name": "a"})
    await call.data.get_by_id("items", doc_id)
    await call.data.update("items", doc_id, {"name": "b"})
    await call.data.query("items", {"name": "b"}, page_size=5)
    await call.data.get_by_id("items", "nothing-here")
    await call.data.delete("items", doc_id)
    assert await read_audit(db, call_id=call.call_id) == []  # nothing commits on its own
    await call.end(commit=True)

    records = await read_audit(db, call_id=call.call_id)
    assert [(r.action, r.collection, r.document_id) for r in records] == [
        ("insert", "items", doc_id),
        ("get", "items", doc_id),
        ("update", "items", doc_id),
        ("query", "items", None),
        ("get", "items", "nothing-here"),
        ("delete", "items", doc_id),
    ]
    assert {(r.actor, r.service, r.call_id) for r in records} == {("alice", service, call.call_id)}
    assert [r.detail.get("found") for r in records] == [None, True, True, None, False, True]
    assert records[2].detail["fields"] == ["name"]
    assert records[3].detail == {
        "filter": [["name", "$eq", "b"]],
        "sort": [],
        "page": 1,
        "page_size": 5,
        "total": 1,
    }
    assert all(r.at is not None for r in records)

    # A rolled-back call leaves neither its writes nor their audit records.
    rolled = Call(data_db, service, ALICE)
    await rolled.data.insert("items", {"name": "never"})
    await rolled.end(commit=False)
    assert await read_audit(db, call_id=rolled.call_id) == []
    assert (await run(data_db, service, ALICE, lambda c: c.data.query("items"))).total == 0


async def test_the_caller_role_cannot_touch_the_catalog_grants_or_others_audit(
    data_db: str, db: Conn
) -> None:
    cursor = await db.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
    )
    catalog_tables = [row[0] for row in await cursor.fetchall()]
    assert {"call_results", "audit_log", "application_catalog"} <= set(catalog_tables), catalog_tables
    refused = [
        *(f"SELECT * FROM public.{table}" for table in catalog_tables),
        "SELECT * FROM dormant_data.grants",
        "INSERT INTO dormant_data.grants (database, collection, principal, kind, name)"
        " VALUES ('x', '*', 'eve', 'role', 'admin')",
        "SELECT * FROM dormant_data.audit",
        "UPDATE dormant_data.audit SET action = 'x'",
        "DELETE FROM dormant_data.audit",
        "INSERT INTO dormant_data.audit (actor, action) VALUES ('alice', 'forged')",
        "SELECT * FROM dormant_data.collection_migrations",
        "UPDATE dormant_data.documents SET owner = 'eve'",
        "CREATE TABLE public.planted (x int)",
        "CREATE TABLE dormant_data.planted (x int)",
    ]
    for statement in refused:
        async with await psycopg.AsyncConnection.connect(data_db, autocommit=False) as conn:
            await enter_caller_role(conn, BOB, "any-service", "call-x")
            current = await (await conn.execute("SELECT current_user")).fetchone()
            assert current == ("dormant_fn",)
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                await conn.execute(statement)


async def test_leaving_the_caller_role_gives_the_runtime_its_privileges_back_in_the_same_transaction(
    data_db: str, db: Conn, service: str
) -> None:
    call = Call(data_db, service, ALICE)
    await call.data.insert("things", {"a": 1})
    conn = await call.begin()
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        async with conn.transaction():  # a savepoint, so the refusal does not end the transaction
            await conn.execute("SELECT count(*) FROM public.schema_migrations")
    await leave_caller_role(conn)
    row = await (
        await conn.execute("SELECT current_user = session_user, count(*) FROM public.schema_migrations")
    ).fetchone()
    assert row is not None and row[0] is True and row[1] > 0
    claims = await (
        await conn.execute("SELECT dormant_data.claim_sub(), dormant_data.current_service()")
    ).fetchone()
    assert claims == (None, None)
    await call.end(commit=True)
    assert (await run(data_db, service, ALICE, lambda c: c.data.query("things"))).total == 1


async def test_insert_with_a_used_id_is_a_conflict_and_the_transaction_goes_on(
    data_db: str, service: str
) -> None:
    async def twice(call: Call) -> int:
        await call.data.insert("things", {"id": "same", "v": 1})
        with pytest.raises(Conflict):
            await call.data.insert("things", {"id": "same", "v": 2})
        await call.data.insert("things", {"id": "other", "v": 3})
        return (await call.data.query("things")).total

    assert await run(data_db, service, ALICE, twice) == 2
    # Bob cannot see alice's "same", and cannot take its id either.
    with pytest.raises(Conflict):
        await run(data_db, service, BOB, lambda c: c.data.insert("things", {"id": "same"}))


async def test_invalid_names_filters_and_pages_are_validation_errors(data_db: str, service: str) -> None:
    call = Call(data_db, service, ALICE)
    try:
        for bad in (
            call.data.insert("Bad-Name", {}),
            call.data.insert("ok", {"x": float("nan")}),
            call.data.insert("ok", {"x": "nul\x00"}),
            call.data.query("ok", {"x; drop table": 1}),
            call.data.query("ok", {"x": {"$regex": "a"}}),
            call.data.query("ok", {"x": {"$gt": True}}),
            call.data.query("ok", page=0),
            call.data.query("ok", page_size=1001),
            call.data.query("ok", sort=[("x", "up")]),  # type: ignore[list-item]
            call.data.update("ok", "some-id", {"id": "new"}),
            call.data.get_by_id("ok", "bad id"),
        ):
            with pytest.raises(ValidationError):
                await bad
        assert (await call.data.query("ok", page_size=1000)).total == 0
    finally:
        await call.end(commit=False)


async def test_authorizer_rules_and_audit(data_db: str, db: Conn, service: str) -> None:
    # An ordinary user may not grant, and the refusal leaves the transaction usable and audited.
    call = Call(data_db, service, BOB)
    with pytest.raises(Forbidden):
        await call.authz.assign_role("bob", "admin", service)
    with pytest.raises(Forbidden):
        await call.authz.has_role("alice", "reader", service)  # asking about someone else
    assert await call.authz.has_role("bob", "admin", service) is False  # about oneself: allowed
    await call.data.insert("notes", {"x": 1})
    await call.end(commit=True)
    refused = await read_audit(db, call_id=call.call_id)
    assert [r.action for r in refused] == ["assign_role", "has_role", "has_role", "insert"]
    assert [r.detail.get("allowed") for r in refused[:3]] == [False, False, True]
    assert refused[0].detail["reason"] == "the caller is not an admin of the database"

    # Token role admin grants; a stored admin role (on the database) grants too.
    async def admin_grants(call: Call) -> list[bool]:
        return [
            await call.authz.assign_role("carol", "admin", service),
            await call.authz.assign_role("carol", "admin", service),  # already there
            await call.authz.assign_permissions("dave", ["read", "custom.flag"], service, "notes"),
        ]

    assert await run(data_db, service, ADMIN, admin_grants) == [True, False, True]
    carol = UserContext(user_id="carol")

    async def carol_checks(call: Call) -> list[bool]:
        return [
            await call.authz.has_permission("dave", "read", service, "notes"),
            await call.authz.has_permission("dave", "read", service),  # database-wide: no
            await call.authz.has_permission("dave", "custom.flag", service, "notes"),
            await call.authz.has_permission("carol", "delete", service, "anything"),  # implied by admin
            await call.authz.has_role("carol", "admin", service, "anything"),
            await call.authz.remove_permissions("dave", ["read"], service, "notes"),
            await call.authz.remove_permissions("dave", ["read"], service, "notes"),
            await call.authz.has_permission("dave", "read", service, "notes"),
        ]

    assert await run(data_db, service, carol, carol_checks) == [
        True,
        False,
        True,
        True,
        True,
        True,
        False,
        False,
    ]
    # No Authorizer manages another service's database.
    with pytest.raises(Forbidden):
        await run(data_db, service, ADMIN, lambda c: c.authz.assign_role("bob", "reader", "another-service"))
    # A collection-scoped admin manages that collection only.
    await run(data_db, service, ADMIN, lambda c: c.authz.assign_role("erin", "admin", service, "notes"))
    erin = UserContext(user_id="erin")
    assert await run(data_db, service, erin, lambda c: c.authz.assign_role("bob", "reader", service, "notes"))
    with pytest.raises(Forbidden):
        await run(data_db, service, erin, lambda c: c.authz.assign_role("bob", "reader", service, "other"))


async def test_migrations_apply_once_to_every_owners_documents_even_when_two_pods_race(
    data_db: str, db: Conn, service: str
) -> None:
    await run(data_db, service, ALICE, lambda c: c.data.insert("users", {"id": "a", "name": "A"}))
    await run(
        data_db, service, BOB, lambda c: c.data.insert("users", {"id": "b", "name": "B", "status": "x"})
    )
    migrations = [
        Migration(
            1,
            "status",
            up=[AddColumnToCollection("users", "status", "active")],
            down=[RemoveColumnFromCollection("users", "status")],
        ),
        Migration(
            2,
            "rename_name",
            up=[RenameColumnInCollection("users", "name", "full_name")],
            down=[RenameColumnInCollection("users", "full_name", "name")],
        ),
    ]

    async def pod() -> list[int]:
        async with await psycopg.AsyncConnection.connect(data_db, autocommit=True) as conn:
            return [p.migration.version for p in await apply_migrations(conn, service, migrations)]

    first, second = await asyncio.gather(pod(), pod())
    assert sorted([first, second]) == [[], [1, 2]]
    cursor = await db.execute(
        "SELECT id, body FROM dormant_data.documents WHERE service = %s ORDER BY id", (service,)
    )
    assert await cursor.fetchall() == [
        ("a", {"full_name": "A", "status": "active"}),
        ("b", {"full_name": "B", "status": "x"}),
    ]
    undone = await apply_migrations(db, service, migrations, target_version=0)
    assert [(p.migration.version, p.direction) for p in undone] == [(2, "down"), (1, "down")]
    cursor = await db.execute(
        "SELECT id, body FROM dormant_data.documents WHERE service = %s ORDER BY id", (service,)
    )
    assert await cursor.fetchall() == [("a", {"name": "A"}), ("b", {"name": "B"})]
    actions = [r.action for r in await read_audit(db, service=service) if r.action.startswith("migrate")]
    assert actions == ["migrate_up", "migrate_up", "migrate_down", "migrate_down"]
    await apply_migrations(db, service, [Migration(1, "status")])
    with pytest.raises(ValidationError):  # a declared migration renamed after it was applied
        await apply_migrations(db, service, [Migration(1, "renamed")])


async def test_erasing_a_user_removes_its_documents_and_grants_in_one_audited_step(
    data_db: str, db: Conn, service: str
) -> None:
    await run(data_db, service, ALICE, lambda c: c.data.insert("notes", {"t": 1}))
    await run(data_db, service, ALICE, lambda c: c.data.insert("other", {"t": 2}))
    await run(data_db, service, BOB, lambda c: c.data.insert("notes", {"t": 3}))
    await run(data_db, service, ADMIN, lambda c: c.authz.assign_role("alice", "reader", service))
    counts = await erase_user(db, "alice", actor="dpo", call_id="erase-1", service=service)
    assert (counts.documents, counts.grants) == (2, 1)
    assert (await run(data_db, service, ALICE, lambda c: c.data.query("notes"))).total == 0
    assert (await run(data_db, service, BOB, lambda c: c.data.query("notes"))).total == 1
    (record,) = await read_audit(db, call_id="erase-1")
    assert (record.action, record.actor, record.detail) == (
        "erase_user",
        "dpo",
        {"user": "alice", "documents": 2, "grants": 1},
    )


PARITY_DOCS: list[dict[str, Any]] = [
    {"id": "d01", "name": "Ann", "age": 31, "tags": ["a"], "active": True},
    {"id": "d02", "name": "bob", "age": 25.5, "active": False},
    {"id": "d03", "name": "Čeněk", "age": 40, "nick": None},
    {"id": "d04", "name": "ann", "age": "unknown"},
    {"id": "d05", "name": "Zed", "age": 1, "meta": {"k": 1}},
    {"id": "d06", "age": 31, "active": True},
    {"id": "d07", "name": "Ann", "age": 1.0},
    {"id": "d08", "name": "émile", "age": 99, "tags": ["b", "a"]},
    {"id": "d09", "name": "", "age": -3, "active": None},
    {"id": "d10", "name": "Bob", "age": 0},
]

PARITY_QUERIES: list[dict[str, Any]] = [
    {},
    {"filter": {"name": "Ann"}},
    {"filter": {"age": 1}},
    {"filter": {"age": {"$gt": 25}}, "sort": [("age", "desc")]},
    {"filter": {"age": {"$gte": 1, "$lt": 40}}, "sort": [("age", "asc"), ("name", "desc")]},
    {"filter": {"name": {"$gt": "B"}}, "sort": [("name", "asc")]},
    {"filter": {"name": {"$in": ["Ann", "bob", 3]}}},
    {"filter": {"name": {"$nin": ["Ann", "bob"]}}, "sort": [("name", "asc")]},
    {"filter": {"name": {"$ne": "Ann"}}},
    {"filter": {"nick": None}},
    {"filter": {"nick": {"$exists": False}}},
    {"filter": {"active": True}},
    {"filter": {"active": {"$ne": True}}},
    {"filter": {"tags": ["a"]}},
    {"filter": {"meta": {"k": 1}}},
    {"filter": {"id": {"$in": ["d01", "d02", "nope"]}}, "sort": [("id", "desc")]},
    {"sort": [("name", "asc")]},
    {"sort": [("name", "desc")]},
    {"sort": [("age", "asc")], "page": 2, "page_size": 3},
    {"sort": [("age", "desc")], "page": 4, "page_size": 3},
    {"sort": [("active", "asc"), ("id", "desc")]},
    {"page": 9, "page_size": 2},
]


async def test_query_semantics_match_the_in_memory_store(data_db: str, service: str) -> None:
    platform = MemoryPlatform()
    memory = platform.datastore(ALICE, service)
    for doc in PARITY_DOCS:
        await memory.insert("people", doc)
    await platform.datastore(BOB, service).insert("people", {"id": "bobs", "name": "Ann", "age": 31})
    await run(
        data_db, service, BOB, lambda c: c.data.insert("people", {"id": "bobs", "name": "Ann", "age": 31})
    )

    async def fill(call: Call) -> None:
        for doc in PARITY_DOCS:
            await call.data.insert("people", doc)

    await run(data_db, service, ALICE, fill)

    async def ask_all(call: Call) -> list[Any]:
        return [await call.data.query("people", q.get("filter"), **_paging(q)) for q in PARITY_QUERIES]

    in_postgres = await run(data_db, service, ALICE, ask_all)
    for query, got in zip(PARITY_QUERIES, in_postgres, strict=True):
        expected = await memory.query("people", query.get("filter"), **_paging(query))
        assert got == expected, query
    assert in_postgres[0].total == len(PARITY_DOCS)  # bob's document is not alice's


def _paging(query: dict[str, Any]) -> dict[str, Any]:
    return {k: query[k] for k in ("sort", "page", "page_size") if k in query}


async def test_schema_creation_is_safe_when_databases_race_for_the_role(fresh_pg: LocalPostgres) -> None:
    urls = [await fresh_pg.create_database(f"race_{i}_{uuid.uuid4().hex[:6]}") for i in range(3)]

    async def create(url: str) -> None:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await ensure_schema(conn)

    await asyncio.gather(*(create(url) for url in urls))
    async with await psycopg.AsyncConnection.connect(urls[0], autocommit=True) as conn:
        row = await (
            await conn.execute(
                "SELECT rolcanlogin, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'dormant_fn'"
            )
        ).fetchone()
    assert row == (False, False, False)


async def test_an_autocommit_connection_is_refused(data_db: str, service: str) -> None:
    async with await psycopg.AsyncConnection.connect(data_db, autocommit=True) as conn:

        async def begin() -> Conn:
            return conn

        store = PostgresDataStore(begin, user=ALICE, service=service, call_id="c")
        authz = PostgresAuthorizer(begin, user=ALICE, service=service, call_id="c")
        with pytest.raises(SystemError):
            await store.query("things")
        with pytest.raises(SystemError):
            await authz.has_role("alice", "reader", service)


async def test_the_policies_read_the_claims_once_per_statement(data_db: str, service: str) -> None:
    """The claim and grant look-ups are sub-selects evaluated once (InitPlans), not once per row."""
    call = Call(data_db, service, ALICE)
    try:
        await call.data.insert("things", {"a": 1})
        conn = await call.begin()
        await enter_caller_role(conn, ALICE, service, call.call_id)
        cursor = await conn.execute(
            "EXPLAIN SELECT * FROM dormant_data.documents WHERE service = %s AND collection = 'things'",
            (service,),
        )
        plan = "\n".join(row[0] for row in await cursor.fetchall())
    finally:
        await call.end(commit=False)
    assert "InitPlan" in plan, plan
    assert "SubPlan" not in plan, plan
