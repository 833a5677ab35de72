"""Lease renewals are HOT updates (heap-only: no index entry written, nothing left for VACUUM in the
indexes): no index of ``replica_slots`` covers a column a renewal sets. The catalog-scale simulation
(``bench/catalog_scale.py``) found every renewal writing into all three indexes of the table."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg

from dormant_catalog import Catalog

Register = Callable[..., Awaitable[int]]
RENEWALS = 40


async def _updates(conn: psycopg.AsyncConnection) -> tuple[int, int]:
    cur = await conn.execute(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'replica_slots'"
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


async def test_renewals_touch_no_index(catalog: Catalog, catalog_url: str, register: Register) -> None:
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = 'replica_slots'::regclass"
        )
        definitions = [str(r[0]) for r in await cur.fetchall()]  # columns, expressions and predicates
        assert definitions and not [d for d in definitions if "lease_expires_at" in d or "updated_at" in d]

        version = await register(catalog, "hot")
        await catalog.deploy("hot", version=version, replicas=1)
        claim = await catalog.claim_slot(
            "pod-h", base_images=("dormant-python:1",), platform_interfaces=("dormant/1",), lease_s=30
        )
        assert claim is not None
        before = await _updates(conn)
        for _ in range(RENEWALS):
            assert await catalog.renew_lease("pod-h", claim.slot_id, lease_s=30) is not None
        # Backends send their table statistics within a second or so of going idle.
        for _ in range(300):
            after = await _updates(conn)
            if after[0] - before[0] >= RENEWALS:
                break
            await asyncio.sleep(0.1)
        updated, hot = after[0] - before[0], after[1] - before[1]
        assert updated >= RENEWALS
        assert hot >= 0.9 * updated, (updated, hot)
