"""The in-memory DataStore and Authorizer (``dormant._memory_platform``), the migration plan and the
validation shared with the Postgres implementation (``tests/integration/test_datastore.py`` checks the
two agree on query semantics)."""

from __future__ import annotations

from typing import Any

import pytest

from dormant._memory_platform import MemoryPlatform
from dormant.context import ANONYMOUS, UserContext
from dormant.datastore import MAX_PAGE_SIZE, QueryResult, parse_filter
from dormant.errors import Conflict, Forbidden, ValidationError
from dormant.migrations import (
    AddColumnToCollection,
    Migration,
    RemoveColumnFromCollection,
    RenameColumnInCollection,
    plan,
)

SERVICE = "user-service"
ALICE = UserContext(user_id="alice", roles=("user",))
BOB = UserContext(user_id="bob")
ADMIN = UserContext(user_id="root", roles=("admin",))


@pytest.fixture
def platform() -> MemoryPlatform:
    return MemoryPlatform()


async def test_insert_get_update_delete_for_the_owner(platform: MemoryPlatform) -> None:
    store = platform.datastore(ALICE, SERVICE)
    doc_id = await store.insert("users", {"name": "Ann", "tags": ["x"]})
    assert len(doc_id) == 32 and int(doc_id, 16) >= 0
    assert await store.get_by_id("users", doc_id) == {"id": doc_id, "name": "Ann", "tags": ["x"]}
    assert await store.update("users", doc_id, {"age": 3, "name": None}) is True  # merge; None stores null
    assert await store.get_by_id("users", doc_id) == {"id": doc_id, "name": None, "tags": ["x"], "age": 3}
    assert await store.delete("users", doc_id) is True
    assert await store.get_by_id("users", doc_id) is None
    assert await store.delete("users", doc_id) is False
    assert await store.insert("users", {"id": "given-id", "a": 1}) == "given-id"
    with pytest.raises(Conflict):
        await store.insert("users", {"id": "given-id"})


async def test_returned_documents_are_copies(platform: MemoryPlatform) -> None:
    store = platform.datastore(ALICE, SERVICE)
    source: dict[str, Any] = {"nested": {"list": [1]}}
    doc_id = await store.insert("c", source)
    source["nested"]["list"].append(2)
    got = await store.get_by_id("c", doc_id)
    assert got is not None and got["nested"] == {"list": [1]}
    got["nested"]["list"].append(3)
    assert (await store.get_by_id("c", doc_id)) == {"id": doc_id, "nested": {"list": [1]}}


async def test_another_user_sees_nothing_until_granted(platform: MemoryPlatform) -> None:
    doc_id = await platform.datastore(ALICE, SERVICE).insert("notes", {"text": "mine"})
    bob = platform.datastore(BOB, SERVICE)
    assert await bob.query("notes") == QueryResult(items=[], total=0, page=1, page_size=100)
    assert await bob.get_by_id("notes", doc_id) is None
    assert await bob.update("notes", doc_id, {"text": "bob"}) is False
    assert await bob.delete("notes", doc_id) is False
    assert await platform.datastore(ALICE, SERVICE).get_by_id("notes", doc_id) == {
        "id": doc_id,
        "text": "mine",
    }

    admin = platform.authorizer(ADMIN, SERVICE)
    assert await admin.assign_permissions("bob", ["read"], SERVICE, "notes") is True
    assert (await bob.query("notes")).total == 1
    assert await bob.update("notes", doc_id, {"text": "bob"}) is False
    await admin.assign_role("bob", "writer", SERVICE)
    assert await bob.update("notes", doc_id, {"text": "bob"}) is True
    assert await bob.delete("notes", doc_id) is False
    await admin.assign_permissions("bob", "delete", SERVICE, "notes")
    assert await bob.delete("notes", doc_id) is True
    # bob's role is database-wide; a grant on one collection gives nothing on another.
    other_id = await platform.datastore(ALICE, SERVICE).insert("other", {"x": 1})
    assert await platform.datastore(BOB, SERVICE).get_by_id("other", other_id) == {"id": other_id, "x": 1}
    carl = UserContext(user_id="carl")
    await admin.assign_permissions("carl", ["read", "write", "delete"], SERVICE, "notes")
    assert await platform.datastore(carl, SERVICE).get_by_id("other", other_id) is None
    assert (await platform.datastore(ALICE, "another-service").query("notes")).total == 0


async def test_anonymous_documents_are_shared_within_the_service(platform: MemoryPlatform) -> None:
    doc_id = await platform.datastore(ANONYMOUS, SERVICE).insert("board", {"msg": "hi"})
    assert await platform.datastore(BOB, SERVICE).update("board", doc_id, {"msg": "yo"}) is True
    await platform.datastore(ALICE, SERVICE).insert("board", {"msg": "alice's"})
    seen = await platform.datastore(ANONYMOUS, SERVICE).query("board")
    assert [item["msg"] for item in seen.items] == ["yo"]
    assert await platform.datastore(ANONYMOUS, "elsewhere").get_by_id("board", doc_id) is None


async def test_every_access_is_audited(platform: MemoryPlatform) -> None:
    store = platform.datastore(ALICE, SERVICE, call_id="c1")
    doc_id = await store.insert("items", {"name": "a"})
    await store.get_by_id("items", doc_id)
    await store.update("items", doc_id, {"name": "b", "age": 2})
    await store.query("items", {"age": {"$gt": 1}}, sort=[("name", "desc")], page_size=5)
    await store.delete("items", "missing")
    assert [
        (r.action, r.collection, r.document_id, r.actor, r.service, r.call_id) for r in platform.audit
    ] == [
        ("insert", "items", doc_id, "alice", SERVICE, "c1"),
        ("get", "items", doc_id, "alice", SERVICE, "c1"),
        ("update", "items", doc_id, "alice", SERVICE, "c1"),
        ("query", "items", None, "alice", SERVICE, "c1"),
        ("delete", "items", "missing", "alice", SERVICE, "c1"),
    ]
    assert platform.audit[2].detail == {"found": True, "fields": ["age", "name"]}
    assert platform.audit[3].detail == {
        "filter": [["age", "$gt", 1]],
        "sort": [["name", "desc"]],
        "page": 1,
        "page_size": 5,
        "total": 1,
    }
    assert platform.audit[4].detail == {"found": False}


async def test_filters_sort_and_pages(platform: MemoryPlatform) -> None:
    store = platform.datastore(ALICE, SERVICE)
    for doc in (
        {"id": "a", "n": 3, "s": "b"},
        {"id": "b", "n": 1.5, "s": "a"},
        {"id": "c", "n": "3", "s": "B"},
        {"id": "d", "flag": True},
        {"id": "e", "n": 10, "flag": 1},
    ):
        await store.insert("c", doc)

    async def ids(filter: dict[str, Any] | None = None, **kwargs: Any) -> list[str]:
        return [item["id"] for item in (await store.query("c", filter, **kwargs)).items]

    assert await ids({"n": {"$gt": 2}}) == ["a", "e"]  # the string "3" is not a number
    assert await ids({"n": {"$lte": "3"}}) == ["c"]
    assert await ids({"flag": True}) == ["d"]  # true is not 1
    assert await ids({"flag": 1}) == ["e"]
    assert await ids({"n": {"$in": [3, "3"]}}) == ["a", "c"]
    assert await ids({"n": {"$nin": [3]}}) == ["b", "c", "d", "e"]  # missing counts as not in
    assert await ids({"n": {"$exists": False}}) == ["d"]
    assert await ids({"id": "c"}) == ["c"]
    assert await ids(sort=[("n", "asc")]) == ["c", "b", "a", "e", "d"]  # string < number; missing last
    assert await ids(sort=[("n", "desc")]) == ["e", "a", "b", "c", "d"]  # missing still last
    assert await ids(sort=[("s", "asc")]) == ["c", "b", "a", "d", "e"]  # by code point: "B" < "a"
    page = await store.query("c", sort=[("id", "desc")], page=2, page_size=2)
    assert ([item["id"] for item in page.items], page.total, page.pages) == (["c", "b"], 5, 3)
    assert (await store.query("c", page=4, page_size=2)).items == []


@pytest.mark.parametrize(
    ("call", "args", "kwargs"),
    [
        ("insert", ("Users", {}), {}),
        ("insert", ("x" * 64, {}), {}),
        ("insert", ("users", ["not", "an", "object"]), {}),
        ("insert", ("users", {"x": float("inf")}), {}),
        ("insert", ("users", {"x": 2**64}), {}),
        ("insert", ("users", {"x": {1, 2}}), {}),
        ("insert", ("users", {"id": "has space"}), {}),
        ("update", ("users", "ok", {"id": "other"}), {}),
        ("get_by_id", ("users", ""), {}),
        ("query", ("users", {"bad-field": 1}), {}),
        ("query", ("users", {"x": {"$where": "1"}}), {}),
        ("query", ("users", {"x": {"$gt": None}}), {}),
        ("query", ("users", {"x": {"$in": 3}}), {}),
        ("query", ("users", {"x": {"$exists": 1}}), {}),
        ("query", ("users", {"x": {"$gt": 1, "y": 2}}), {}),
        ("query", ("users",), {"page": 0}),
        ("query", ("users",), {"page_size": MAX_PAGE_SIZE + 1}),
        ("query", ("users",), {"page_size": True}),
        ("query", ("users",), {"sort": [("x", "sideways")]}),
        ("query", ("users",), {"sort": "x"}),
    ],
)
async def test_invalid_input_is_a_validation_error(
    platform: MemoryPlatform, call: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError):
        await getattr(platform.datastore(ALICE, SERVICE), call)(*args, **kwargs)
    assert platform.audit == []


def test_a_dict_value_without_operators_is_a_literal() -> None:
    (condition,) = parse_filter({"meta": {"k": 1}})
    assert (condition.field, condition.op, condition.value) == ("meta", "$eq", {"k": 1})


async def test_who_may_grant_and_check(platform: MemoryPlatform) -> None:
    bob = platform.authorizer(BOB, SERVICE, call_id="c2")
    with pytest.raises(Forbidden):
        await bob.assign_role("bob", "admin", SERVICE)
    with pytest.raises(Forbidden):
        await bob.has_role("alice", "reader", SERVICE)
    assert await bob.has_permission("bob", "read", SERVICE) is False  # about oneself
    assert [(r.action, r.detail["allowed"], r.detail["reason"]) for r in platform.audit] == [
        ("assign_role", False, "the caller is not an admin of the database"),
        ("has_role", False, "the caller is not an admin of the database"),
        ("has_permission", True, None),
    ]
    admin = platform.authorizer(ADMIN, SERVICE)
    with pytest.raises(Forbidden):
        await admin.assign_role("bob", "reader", "another-service")
    assert await admin.assign_role("carol", "admin", SERVICE) is True
    assert await admin.assign_role("carol", "admin", SERVICE) is False
    carol = platform.authorizer(UserContext(user_id="carol"), SERVICE)
    assert await carol.assign_permissions("dave", ["read", "custom.flag"], SERVICE, "notes") is True
    assert await carol.has_permission("dave", "read", SERVICE, "notes") is True
    assert await carol.has_permission("dave", "read", SERVICE) is False  # database-wide check
    assert await carol.has_permission("carol", "delete", SERVICE, "x") is True  # implied by admin
    assert await carol.has_role("carol", "admin", SERVICE, "x") is True
    assert await carol.remove_permissions("dave", ["read"], SERVICE, "notes") is True
    assert await carol.remove_permissions("dave", ["read"], SERVICE, "notes") is False
    assert await carol.remove_role("carol", "admin", SERVICE) is True
    with pytest.raises(Forbidden):
        await carol.assign_role("dave", "reader", SERVICE)
    await admin.assign_role("erin", "admin", SERVICE, "notes")
    erin = platform.authorizer(UserContext(user_id="erin"), SERVICE)
    assert await erin.assign_role("bob", "reader", SERVICE, "notes") is True
    with pytest.raises(Forbidden):
        await erin.assign_role("bob", "reader", SERVICE, "other")
    with pytest.raises(Forbidden):
        await platform.authorizer(ANONYMOUS, SERVICE).has_role("bob", "reader", SERVICE)
    with pytest.raises(ValidationError):
        await admin.assign_role("", "reader", SERVICE)
    with pytest.raises(ValidationError):
        await admin.assign_role("bob", "bad role", SERVICE)
    with pytest.raises(ValidationError):
        await admin.assign_role("bob", "reader", SERVICE, "Bad")


async def test_migrations_run_once_for_every_owner_and_go_down(platform: MemoryPlatform) -> None:
    await platform.datastore(ALICE, SERVICE).insert("users", {"id": "a", "name": "A"})
    await platform.datastore(BOB, SERVICE).insert("users", {"id": "b", "name": "B", "status": "x"})
    await platform.datastore(BOB, "other").insert("users", {"id": "o", "name": "O"})
    migrations = [
        Migration(
            1,
            "status",
            [AddColumnToCollection("users", "status", "active")],
            [RemoveColumnFromCollection("users", "status")],
        ),
        Migration(
            2,
            "rename",
            [RenameColumnInCollection("users", "name", "full_name")],
            [RenameColumnInCollection("users", "full_name", "name")],
        ),
    ]
    assert [p.migration.version for p in platform.apply_migrations(SERVICE, migrations)] == [1, 2]
    assert platform.apply_migrations(SERVICE, migrations) == []
    bodies = {key[2]: doc.body for key, doc in platform.documents.items()}
    assert bodies == {
        "a": {"full_name": "A", "status": "active"},
        "b": {"full_name": "B", "status": "x"},
        "o": {"name": "O"},
    }
    down = platform.apply_migrations(SERVICE, migrations, target_version=1)
    assert [(p.migration.version, p.direction) for p in down] == [(2, "down")]
    assert platform.documents[(SERVICE, "users", "a")].body == {"name": "A", "status": "active"}
    assert [r.action for r in platform.audit if r.action.startswith("migrate")] == [
        "migrate_up",
        "migrate_up",
        "migrate_down",
    ]


def test_the_migration_plan() -> None:
    one, two, three = (Migration(v, f"m{v}") for v in (1, 2, 3))
    assert [(p.migration.version, p.direction) for p in plan([three, one, two], {}, None)] == [
        (1, "up"),
        (2, "up"),
        (3, "up"),
    ]
    assert [
        (p.migration.version, p.direction) for p in plan([one, two, three], {1: "m1", 2: "m2", 3: "m3"}, 1)
    ] == [
        (3, "down"),
        (2, "down"),
    ]
    assert [p.migration.version for p in plan([one, two], {1: "m1"}, 2)] == [2]
    # An older pod (knowing only 1 and 2) after version 3 was applied: nothing to do, nothing undone.
    assert plan([one, two], {1: "m1", 2: "m2", 3: "m3"}, None) == []
    with pytest.raises(ValidationError):
        plan([one, two], {1: "m1", 2: "m2", 3: "m3"}, 2)  # cannot undo an undeclared version
    with pytest.raises(ValidationError):
        plan([one], {1: "renamed"}, None)
    with pytest.raises(ValidationError):
        plan([one], {}, 5)
    with pytest.raises(ValidationError):
        plan([one, Migration(1, "again")], {}, None)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Migration(0, "zero"),
        lambda: Migration(1, " "),
        lambda: Migration(1, "m", up=["not a step"]),  # type: ignore[list-item]
        lambda: AddColumnToCollection("users", "id", 1),
        lambda: AddColumnToCollection("Users", "x", 1),
        lambda: AddColumnToCollection("users", "x", {1, 2}),
        lambda: RenameColumnInCollection("users", "x", "x"),
        lambda: RemoveColumnFromCollection("users", "X"),
    ],
)
def test_invalid_migrations_are_validation_errors(build: Any) -> None:
    with pytest.raises(ValidationError):
        build()


async def test_erasing_a_user(platform: MemoryPlatform) -> None:
    await platform.datastore(ALICE, SERVICE).insert("a", {"x": 1})
    await platform.datastore(ALICE, "other").insert("a", {"x": 2})
    await platform.datastore(BOB, SERVICE).insert("a", {"x": 3})
    await platform.authorizer(ADMIN, SERVICE).assign_role("alice", "reader", SERVICE)
    counts = platform.erase_user("alice", actor="dpo", service=SERVICE)
    assert (counts.documents, counts.grants) == (1, 1)
    assert (await platform.datastore(ALICE, "other").query("a")).total == 1
    assert platform.erase_user("alice").documents == 1
    assert [(r.action, r.actor, r.detail) for r in platform.audit if r.action == "erase_user"] == [
        ("erase_user", "dpo", {"user": "alice", "documents": 1, "grants": 1}),
        ("erase_user", None, {"user": "alice", "documents": 1, "grants": 0}),
    ]
