"""The one alias writer: every path that moves an alias (deploy, ``alias set``, a rollback, the
gateway's API, an undeploy) checks the same rules, writes the audit log and NOTIFYs the controller.
And the one publish path's registration: concurrent publishes of the same image register it once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest

from dormant_catalog import Catalog, InvalidCatalogRequest, NotFoundInCatalog, SlotListener
from dormant_catalog import aliases as alias_sql
from dormant_catalog import versions as version_sql
from dormant_catalog.channels import ROUTES_CHANNEL
from dormant_catalog.gateway import functions as function_sql

Register = Callable[..., Awaitable[int]]


async def _alias_audits(catalog: Catalog, app: str) -> list[dict[str, Any]]:
    return [r.detail for r in await catalog.list_audit(app) if r.action == "set-alias"]


async def _next(received: AsyncIterator[str]) -> str:
    return await asyncio.wait_for(anext(received), 5)


async def test_deploy_set_alias_and_rollback_each_audit_and_notify(
    catalog: Catalog, register: Register
) -> None:
    for _ in range(2):
        await register(catalog, "svc")
    async with SlotListener(catalog.url, channel=ROUTES_CHANNEL) as listener:
        received = aiter(listener)
        await catalog.deploy("svc", version=1)
        assert await _next(received) == "svc"
        assert (await _alias_audits(catalog, "svc"))[-1] == {"alias": "live", "weights": {"1": 100}}

        await catalog.set_alias("svc", "beta", {2: 10, 1: 90}, actor="ann")  # ``dormant alias set``
        assert await _next(received) == "svc"
        assert (await _alias_audits(catalog, "svc"))[-1] == {"alias": "beta", "weights": {"1": 90, "2": 10}}

        await catalog.start_rollout("svc", 2, {"strategy": "canary", "force": True}, actor="ann")
        assert "rolled svc back" in await catalog.rollback("svc", actor="ann")
        assert await _next(received) == "svc"
        last = (await _alias_audits(catalog, "svc"))[-1]
        assert last["alias"] == "live" and last["weights"] == {"1": 100}
        assert last["why"].startswith("rollback: manual rollback by ann")


async def test_the_gateway_path_audits_and_undeploy_clears_with_an_audit(
    catalog: Catalog, register: Register
) -> None:
    await register(catalog, "gw")
    await catalog.deploy("gw", version=1)
    async with SlotListener(catalog.url, channel=ROUTES_CHANNEL) as listener:
        received = aiter(listener)
        await catalog.db.run(alias_sql.set_alias, "gw", "prod", {1: 100}, actor="api-user")
        assert await _next(received) == "gw"
        audit = (await catalog.list_audit("gw"))[-1]
        assert (audit.actor, audit.action) == ("api-user", "set-alias")
        assert audit.detail == {"alias": "prod", "weights": {"1": 100}}

        assert await catalog.db.run(function_sql.delete_function, "gw", actor="api-user")
        assert await _next(received) == "gw"
        assert "clear-aliases" in [r.action for r in await catalog.list_audit("gw")]
        assert await catalog.list_aliases("gw") == {"live": {}}


@pytest.mark.parametrize(
    ("alias", "weights", "error"),
    [
        ("beta", {1: 1, 2: 1}, InvalidCatalogRequest),  # not 100 in all: the rollout path took it
        ("beta", {1: 90, 2: 20}, InvalidCatalogRequest),
        ("beta", {1: -10, 2: 110}, InvalidCatalogRequest),
        ("Beta", {1: 100}, InvalidCatalogRequest),
        ("beta", {9: 100}, NotFoundInCatalog),
        ("live", {1: 1, 2: 1}, InvalidCatalogRequest),
    ],
)
async def test_every_writer_refuses_what_the_rules_refuse(
    catalog: Catalog, register: Register, alias: str, weights: dict[int, int], error: type[Exception]
) -> None:
    for _ in range(2):
        await register(catalog, "svc")
    await catalog.deploy("svc", version=1)
    before = (await catalog.list_aliases("svc"), len(await catalog.list_audit("svc")))
    slots_before = await catalog.list_slots("svc")
    with pytest.raises(error):
        await catalog.set_alias("svc", alias, weights, force=True)  # ``dormant alias set``
    with pytest.raises(error):
        await catalog.db.run(alias_sql.set_alias, "svc", alias, weights, actor="api")  # gateway API
    assert (await catalog.list_aliases("svc"), len(await catalog.list_audit("svc"))) == before
    assert await catalog.list_slots("svc") == slots_before  # no slot was added for refused weights


async def test_concurrent_publishes_of_one_image_register_it_once(catalog: Catalog, catalog_url: str) -> None:
    fields: dict[str, Any] = {
        "app_name": "twin",
        "app_layer_image": "oci:/layers/twin@sha256:" + "a" * 64,
        "base_image": "dormant-python:1",
        "interface_hash": "sha256:" + "b" * 64,
        "schema_definition": {"functions": {}},
        "topic_mappings": {},
    }
    # Hold the numbering lock so both publishes are queued on it before either looks at the latest
    # version: a check made outside the lock would let both register.
    async with (
        await psycopg.AsyncConnection.connect(catalog_url) as holder,
        await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as watcher,
    ):
        await holder.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (version_sql.VERSION_LOCK_CLASS, "twin")
        )
        first, second = (asyncio.ensure_future(catalog.publish_version(**fields)) for _ in range(2))
        deadline = asyncio.get_running_loop().time() + 10
        while True:
            cur = await watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            row = await cur.fetchone()
            if row is not None and row[0] == 2:
                break
            assert asyncio.get_running_loop().time() < deadline, "the publishes never queued on the lock"
            await asyncio.sleep(0.01)
        await holder.rollback()
    results = sorted([await first, await second], key=lambda r: r[1])
    assert results == [(1, False), (1, True)]
    assert [v.version for v in await catalog.list_versions("twin")] == [1]
    fields["app_layer_image"] = "oci:/layers/twin@sha256:" + "c" * 64
    assert await catalog.publish_version(**fields) == (2, True)
