"""``dormant data erase`` and ``dormant data audit`` on a real catalog database with DataStore documents:
one user's documents and grants go, in one audited transaction, and nobody else's."""

from __future__ import annotations

import asyncio
import json

import psycopg
import pytest

from dormant import UserContext
from dormant_cli import main
from dormant_runtime.datastore import PostgresAuthorizer, PostgresDataStore, ensure_schema


async def _write(catalog_url: str, user: UserContext, service: str, name: str) -> str:
    async with await psycopg.AsyncConnection.connect(catalog_url) as conn:

        async def begin() -> psycopg.AsyncConnection[object]:
            return conn

        doc = await PostgresDataStore(begin, user=user, service=service, call_id=f"c-{name}").insert(
            "users", {"name": name}
        )
        await conn.commit()
        return doc


async def test_erase_takes_one_users_data_and_audits_it(
    catalog_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        await ensure_schema(conn)
    alice, bob = UserContext(user_id="alice"), UserContext(user_id="bob")
    await _write(catalog_url, alice, "svc-a", "a1")
    await _write(catalog_url, alice, "svc-b", "a2")
    kept = await _write(catalog_url, bob, "svc-a", "b1")
    async with await psycopg.AsyncConnection.connect(catalog_url) as conn:

        async def begin() -> psycopg.AsyncConnection[object]:
            return conn

        root = UserContext(user_id="root", roles=("admin",))
        authz = PostgresAuthorizer(begin, user=root, service="svc-a", call_id="c-grant")
        assert await authz.assign_permissions("alice", ["read"], "svc-a", "users")
        await conn.commit()

    erase = ["data", "erase", "--user", "alice", "--actor", "ops:ann", "--json", "--catalog-url", catalog_url]
    assert await asyncio.to_thread(main, erase) == 0
    assert json.loads(capsys.readouterr().out) == {
        "user": "alice",
        "service": None,
        "documents": 2,
        "grants": 1,
    }
    async with await psycopg.AsyncConnection.connect(catalog_url) as conn:
        owners = await (await conn.execute("SELECT owner, id FROM dormant_data.documents")).fetchall()
    assert owners == [("bob", kept)]

    assert await asyncio.to_thread(main, ["data", "audit", "--json", "--catalog-url", catalog_url]) == 0
    records = json.loads(capsys.readouterr().out)["records"]
    erasures = [r for r in records if r["action"] == "erase_user"]
    assert len(erasures) == 1 and erasures[0]["actor"] == "ops:ann"
    assert {r["actor"] for r in records} >= {"alice", "bob", "root", "ops:ann"}


def test_erase_without_a_reachable_database_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "erase", "--user", "x", "--catalog-url", "postgresql://127.0.0.1:1/none"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("nothing was erased" in err or "cannot reach" in err)
