"""``dormant_runtime.platform.RuntimePlatform``: what handlers get in a pod, on a real Postgres and broker.

The schema is prepared once however many runtimes start at once, a version's collection migrations run
once and reach every owner's documents, ``ctx.data`` acts as the call's caller on the call's own
transaction (committed or rolled back with it), and a runtime without a database answers DataStore use
with ``Unavailable`` while serving everything else.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from dormant import Context, UserContext
from dormant.errors import Unavailable
from dormant.migrations import AddColumnToCollection, Migration, RemoveColumnFromCollection
from dormant_local import MosquittoProcess
from dormant_runtime.platform import RuntimePlatform, outgoing_client
from dormant_runtime.transactions import TransactionPool

SERVICE = "platform-test"
STATUS = Migration(
    1,
    "users_get_a_status",
    up=[AddColumnToCollection("users", "status", "active")],
    down=[RemoveColumnFromCollection("users", "status")],
)


def _platform(catalog_url: str | None, broker: MosquittoProcess, name: str) -> RuntimePlatform:
    return RuntimePlatform(catalog_url=catalog_url, client=outgoing_client(broker.url, f"platform-{name}"))


def _ctx(pool: TransactionPool, platform: RuntimePlatform, user: str, call_id: str) -> Context:
    return Context(
        call_id=call_id,
        service=SERVICE,
        function="f",
        user=UserContext(user_id=user),
        _transactions=pool,
        _platform=platform,
    )


async def test_runtimes_starting_together_apply_a_versions_migrations_once(
    catalog_url: str, broker: MosquittoProcess
) -> None:
    pool = TransactionPool(catalog_url)
    first = _platform(catalog_url, broker, "a")
    try:
        await first.prepare(SERVICE)  # the schema, no migrations yet
        # alice's document exists before the version with the migration starts.
        ctx = _ctx(pool, first, "alice", "c-1")
        doc_id = await ctx.data.insert("users", {"name": "Ann"})
        await pool.end(await ctx._transaction(), commit=True)

        platforms = [_platform(catalog_url, broker, f"m{i}") for i in range(4)]
        await asyncio.gather(*(p.prepare(SERVICE, [STATUS]) for p in platforms))
        for platform in platforms:
            await platform.close()
        async with await psycopg.AsyncConnection.connect(catalog_url) as db:
            applied = await (
                await db.execute(
                    "SELECT version, name FROM dormant_data.collection_migrations WHERE service = %s",
                    (SERVICE,),
                )
            ).fetchall()
        assert applied == [(1, "users_get_a_status")]

        # bob's call does not see alice's document; alice's sees it with the migrated field.
        bob = _ctx(pool, first, "bob", "c-2")
        assert await bob.data.get_by_id("users", doc_id) is None
        await pool.end(await bob._transaction(), commit=False)
        alice = _ctx(pool, first, "alice", "c-3")
        assert await alice.data.get_by_id("users", doc_id) == {
            "id": doc_id,
            "name": "Ann",
            "status": "active",
        }
        await pool.end(await alice._transaction(), commit=False)
    finally:
        await first.close()
        await pool.close()


async def test_a_rolled_back_call_leaves_no_document(catalog_url: str, broker: MosquittoProcess) -> None:
    pool = TransactionPool(catalog_url)
    platform = _platform(catalog_url, broker, "r")
    try:
        await platform.prepare(SERVICE)
        ctx = _ctx(pool, platform, "alice", "c-rollback")
        await ctx.data.insert("users", {"name": "Gone"})
        await pool.end(await ctx._transaction(), commit=False)
        check = _ctx(pool, platform, "alice", "c-check")
        assert (await check.data.query("users")).total == 0
        await pool.end(await check._transaction(), commit=False)
    finally:
        await platform.close()
        await pool.close()


async def test_without_a_database_the_datastore_is_unavailable(broker: MosquittoProcess) -> None:
    platform = _platform(None, broker, "n")
    try:
        await platform.prepare(SERVICE)
        ctx = Context(call_id="c", service=SERVICE, function="f", _platform=platform)
        with pytest.raises(Unavailable, match="no database"):
            await ctx.data.query("users")
    finally:
        await platform.close()
