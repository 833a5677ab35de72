"""A catalog that has every migration is checked without the migration lock: a pool of pods starting at
once does not queue on it one by one (the catalog-scale simulation, ``bench/catalog_scale.py``, measured
that queue); one with migrations pending still waits for the lock."""

from __future__ import annotations

import asyncio

import psycopg

from dormant_catalog import migrate
from dormant_catalog.migrate import MIGRATION_LOCK_KEY, load_migrations


async def test_pending_migrations_wait_for_the_lock_and_an_up_to_date_catalog_does_not(
    catalog_url: str,
) -> None:
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as holder:
        # Another process is migrating: a fresh catalog waits for it.
        await holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        pending = asyncio.create_task(migrate(catalog_url))
        await asyncio.sleep(0.5)
        assert not pending.done()
        await holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        assert await asyncio.wait_for(pending, 60) == [m.name for m in load_migrations()]

        # Up to date: a pod starting while the lock is held (by anyone, for any time) goes on at once.
        await holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        assert (
            await asyncio.wait_for(asyncio.gather(*(migrate(catalog_url) for _ in range(5))), 60) == [[]] * 5
        )
        await holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
