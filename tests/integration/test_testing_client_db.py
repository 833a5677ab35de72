"""``TestClient`` with a real Postgres connection behind ``ctx.transaction()`` (as docs/testing.md shows).

A source with only ``begin()`` gets its transactions finished by the client: committed when the call
succeeds, rolled back when it fails, on the connection the handler wrote through.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from dormant import TimeoutError
from dormant.testing import TestClient

LEDGER_SERVICE = Path(__file__).resolve().parents[1] / "fixtures" / "services" / "ledger-service"


class OneConnection:
    def __init__(self, conn: psycopg.AsyncConnection) -> None:
        self.conn = conn
        self.begun = 0

    async def begin(self) -> psycopg.AsyncConnection:
        self.begun += 1
        return self.conn


async def test_the_ledger_commits_a_call_and_rolls_back_a_failed_one(
    catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LEDGER_RUNS_FILE", raising=False)
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as admin:
        await admin.execute("CREATE TABLE ledger_effects (call_id text NOT NULL, item text, pid integer)")
    async with await psycopg.AsyncConnection.connect(catalog_url) as conn:
        source = OneConnection(conn)
        async with TestClient(LEDGER_SERVICE, transactions=source) as client:
            assert (await client.call("record", {"item": "pen"}, call_id="c-1"))["item"] == "pen"
            # The handler writes, then a wrapper raises after the write: the write must not survive.
            handler = client.handler
            original = type(handler).record

            async def record_then_time_out(self: object, request: object, ctx: object) -> object:
                await original(self, request, ctx)
                raise TimeoutError("late")

            monkeypatch.setattr(type(handler), "record", record_then_time_out)
            with pytest.raises(TimeoutError):
                await client.call("record", {"item": "ink"}, call_id="c-2")
        assert source.begun == 2
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as check:
        rows = await (await check.execute("SELECT call_id, item FROM ledger_effects ORDER BY 1")).fetchall()
    assert rows == [("c-1", "pen")]
