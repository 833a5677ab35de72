"""Versions and deletion (issue 12, item 8): a function keeps at most 100 versions, the oldest that
nothing references are cleaned up when one more is published, and publishing is refused when they are
all referenced; a deleted function is restored within its retention period (triggers and deployment
back) and purged after it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from dormant_catalog import Catalog, InvalidCatalogRequest, NotFoundInCatalog
from dormant_catalog import versions as version_sql
from dormant_catalog.gateway import functions as function_sql
from dormant_catalog.gateway import triggers as trigger_sql

Register = Callable[..., Awaitable[int]]


async def test_the_oldest_unreferenced_versions_make_room_for_a_new_one(
    catalog: Catalog, register: Register
) -> None:
    for _ in range(3):
        await register(catalog, "keep")
    await catalog.deploy("keep", version=1, replicas=1)  # v1: deployed, a slot serves it, live routes to it
    await catalog.set_alias("keep", "beta", {2: 100})  # v2: an alias routes to it
    for _ in range(version_sql.MAX_VERSIONS - 3):
        await register(catalog, "keep")
    assert len(await catalog.list_versions("keep")) == version_sql.MAX_VERSIONS

    newest = await register(catalog, "keep")  # the 101st: v3, the oldest unreferenced one, goes
    assert newest == version_sql.MAX_VERSIONS + 1
    kept = [v.version for v in await catalog.list_versions("keep")]
    assert len(kept) == version_sql.MAX_VERSIONS and 3 not in kept and {1, 2, newest} <= set(kept)
    assert await register(catalog, "keep") == newest + 1  # numbers are never reused
    assert 4 not in [v.version for v in await catalog.list_versions("keep")]
    cleanups = [r for r in await catalog.list_audit("keep", limit=500) if r.action == "clean-up-versions"]
    assert [r.detail["removed"] for r in cleanups] == [[3], [4]]


async def test_publishing_is_refused_when_every_older_version_is_referenced(
    catalog: Catalog, register: Register
) -> None:
    for _ in range(3):
        await register(catalog, "full")
    await catalog.set_alias("full", "a", {1: 50, 2: 50})
    await catalog.deploy("full", version=3, replicas=1)

    async def squeeze(conn: object) -> list[int]:
        # A limit of 2 with 3 versions, none of them free: nothing can go.
        return await version_sql._keep_at_most(conn, "full", 2, actor="test")  # type: ignore[arg-type]

    with pytest.raises(InvalidCatalogRequest, match="keeps at most 2, and only 0 of the older ones"):
        await catalog.db.run(squeeze)
    assert [v.version for v in await catalog.list_versions("full")] == [1, 2, 3]


async def test_a_deleted_function_is_restored_within_its_retention_and_purged_after(
    catalog: Catalog, register: Register
) -> None:
    version = await register(catalog, "gone")
    await catalog.deploy("gone", version=version, replicas=2)
    trigger = await catalog.db.run(
        trigger_sql.create_trigger,
        function_name="gone",
        kind="cron",
        target="live",
        config={"schedule": "*/5 * * * *"},
        enabled=True,
        actor="test",
    )
    assert await catalog.db.run(function_sql.delete_function, "gone", actor="ann")
    assert await catalog.get_deployment("gone") is None
    assert not (await catalog.db.run(trigger_sql.get_trigger, "gone", trigger.trigger_id)).enabled

    restored = await catalog.db.run(function_sql.restore_function, "gone", retention_s=3600, actor="ann")
    assert restored.deleted_at is None
    deployment = await catalog.get_deployment("gone")
    assert deployment is not None and (deployment.target_version, deployment.replicas) == (version, 2)
    assert (await catalog.db.run(trigger_sql.get_trigger, "gone", trigger.trigger_id)).enabled
    with pytest.raises(InvalidCatalogRequest, match="is not deleted"):
        await catalog.db.run(function_sql.restore_function, "gone", retention_s=3600, actor="ann")

    # Deleted again, and the retention runs out: no restore, and the sweep purges it.
    assert await catalog.db.run(function_sql.delete_function, "gone", actor="ann")
    await asyncio.sleep(0.3)
    with pytest.raises(NotFoundInCatalog, match="can no longer be restored"):
        await catalog.db.run(function_sql.restore_function, "gone", retention_s=0.2, actor="ann")
    assert await catalog.db.run(function_sql.purge_deleted, retention_s=3600, actor="sweeper") == []
    assert await catalog.db.run(function_sql.purge_deleted, retention_s=0.2, actor="sweeper") == ["gone"]
    assert await catalog.db.run(trigger_sql.get_trigger, "gone", trigger.trigger_id) is None
    actions = [r.action for r in await catalog.list_audit("gone")]
    assert actions[-1] == "purge-function" and "restore-function" in actions
