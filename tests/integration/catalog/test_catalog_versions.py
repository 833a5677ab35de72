"""Registering versions: numbering under concurrency, immutability, reads and audit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg
import pytest

from dormant_catalog import Catalog, ImmutableVersion, InvalidCatalogRequest, NotFoundInCatalog, open_catalog

Register = Callable[..., Awaitable[int]]


async def test_versions_number_from_one_per_app(catalog: Catalog, register: Register) -> None:
    assert await register(catalog, "alpha") == 1
    assert await register(catalog, "alpha") == 2
    assert await register(catalog, "beta") == 1
    assert await catalog.latest_version("alpha") == 2
    assert await catalog.latest_version("gamma") is None
    record = await catalog.get_version("alpha", 2)
    assert record is not None
    assert record.status == "built"
    assert record.base_image == "dormant-python:1"
    assert record.platform_interface == "dormant/1"
    assert record.schema_definition == {"functions": {"ping": {}}}
    assert record.topic_mappings == {"ping": "service/alpha/ping"}
    assert await catalog.get_version("alpha", 3) is None
    assert [v.version for v in await catalog.list_versions("alpha")] == [1, 2]


async def test_ten_concurrent_registers_get_one_to_ten(catalog_url: str) -> None:
    catalogs = [await open_catalog(catalog_url, max_size=1) for _ in range(10)]
    try:
        numbers = await asyncio.gather(
            *(
                cat.register_version(
                    app_name="racer",
                    app_layer_image=f"oci:/l@sha256:{i:064x}",
                    base_image="dormant-python:1",
                    interface_hash="h",
                    schema_definition={},
                    topic_mappings={},
                )
                for i, cat in enumerate(catalogs)
            )
        )
        assert sorted(numbers) == list(range(1, 11))
        by_version = {v.version: v.app_layer_image for v in await catalogs[0].list_versions("racer")}
        assert {by_version[n] for n in numbers} == {f"oci:/l@sha256:{i:064x}" for i in range(10)}
    finally:
        for cat in catalogs:
            await cat.close()


async def test_versions_are_immutable_but_status_moves(
    catalog: Catalog, catalog_url: str, register: Register
) -> None:
    await register(catalog, "frozen")
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        for column, value in [
            ("app_layer_image", "oci:/other"),
            ("interface_hash", "x"),
            ("base_image", "b"),
        ]:
            with pytest.raises(psycopg.Error) as info:
                await conn.execute(
                    f"UPDATE application_catalog SET {column} = %s WHERE app_name = 'frozen'",
                    (value,),
                )
            assert info.value.sqlstate == "DM001"
    record = await catalog.set_version_status("frozen", 1, "approved", actor="alice")
    assert record.status == "approved"
    assert record.app_layer_image == f"oci:/layers/frozen@sha256:{1:064x}"
    with pytest.raises(InvalidCatalogRequest):
        await catalog.set_version_status("frozen", 1, "gone")
    with pytest.raises(NotFoundInCatalog):
        await catalog.set_version_status("frozen", 9, "approved")


async def test_immutability_error_is_a_catalog_error(
    catalog: Catalog, catalog_url: str, register: Register
) -> None:
    from dormant_catalog.db import mapped_errors

    await register(catalog, "frozen")
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        with pytest.raises(ImmutableVersion, match="immutable"), mapped_errors():
            await conn.execute("UPDATE application_catalog SET version = 7 WHERE app_name = 'frozen'")


async def test_register_rejects_bad_names_and_audits(catalog: Catalog, register: Register) -> None:
    with pytest.raises(InvalidCatalogRequest):
        await register(catalog, "Bad_Name")
    await register(catalog, "audited", actor="ci-bot")
    rows = await catalog.list_audit("audited")
    assert [(r.actor, r.action, r.detail["version"]) for r in rows] == [("ci-bot", "register", 1)]
