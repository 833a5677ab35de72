"""While slots are free a claim reads them from the partial index ``replica_slots_free`` in claim order
instead of sorting every claimable slot (the catalog-scale simulation, ``bench/catalog_scale.py``, found
the sort costing 20-50 ms per claim at 20,000 slots: filling a pool was quadratic in its size), and takes
them in the order the full claim would."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import psycopg

from dormant_catalog import Catalog
from dormant_catalog.pods import _CLAIM_FREE

Register = Callable[..., Awaitable[int]]
PARAMS = {"pod": "explain", "bases": ["dormant-python:1"], "ifaces": ["dormant/1"], "lease": 10.0}


async def test_free_slots_are_claimed_from_the_index_in_order(
    catalog: Catalog, catalog_url: str, register: Register
) -> None:
    for i in range(400):
        await register(catalog, f"f-{i:03d}")
        await catalog.deploy(f"f-{i:03d}", replicas=2)
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        await conn.execute("ANALYZE")
        async with conn.transaction(force_rollback=True):
            cur = await conn.execute(b"EXPLAIN (ANALYZE, COSTS OFF) " + _CLAIM_FREE.encode(), PARAMS)
            plan = "\n".join(str(r[0]) for r in await cur.fetchall())
    assert "Index Scan using replica_slots_free on replica_slots" in plan, plan
    assert "Sort" not in plan.split("CTE claimed")[0], plan  # no sort of the candidates

    # The order of the full claim: by service and slot index; one with a failed start last.
    await catalog.db.run(_fail_first_slot)
    got = [
        await catalog.claim_slot(
            f"pod-{n}", base_images=("dormant-python:1",), platform_interfaces=("dormant/1",), lease_s=30
        )
        for n in range(3)
    ]
    assert [(c.app_name, c.slot_index) for c in got if c] == [("f-000", 1), ("f-001", 0), ("f-001", 1)]


async def _fail_first_slot(conn: psycopg.AsyncConnection) -> None:
    await conn.execute(
        "UPDATE replica_slots SET last_error = 'it broke' WHERE app_name = 'f-000' AND slot_index = 0"
    )
