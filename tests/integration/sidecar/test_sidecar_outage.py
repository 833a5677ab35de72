"""A catalog outage (the database stopped, then started again) must not stop a pod from serving."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sidecar_helpers import alive, layer_bytes, read_log, wait_for

from dormant_catalog import open_catalog
from dormant_layers import LayerStore
from dormant_local import LocalPostgres
from dormant_sidecar import Pod

StartPod = Callable[..., Awaitable[Pod]]


@pytest.mark.slow
async def test_pod_keeps_serving_through_a_database_restart(
    fresh_pg: LocalPostgres, layer_store: Path, start_pod: StartPod, runtime_log: Path
) -> None:
    url = await fresh_pg.create_database("dormant_outage")
    async with await open_catalog(url) as catalog:
        ref = LayerStore(layer_store).push("svc", layer_bytes("code"))
        await catalog.register_version(
            app_name="svc",
            app_layer_image=str(ref),
            base_image="dormant-python:1",
            interface_hash="h",
            schema_definition={},
            topic_mappings={},
        )
        await catalog.deploy("svc")
        pod = await start_pod(catalog_url=url)
        [load] = await wait_for(
            lambda: [e for e in read_log(runtime_log) if e["event"] == "load"], what="load"
        )

        await fresh_pg.stop()
        await asyncio.sleep(3.5)  # several lease lengths without a catalog
        assert alive(load["pid"])
        assert pod.runtime is not None and pod.runtime.pid == load["pid"]
        assert not [e for e in read_log(runtime_log) if e["event"] == "drained" and e["pid"] == load["pid"]]

        await fresh_pg.start()

        async def renewed_by_pod() -> bool:
            try:
                slot = (await catalog.list_slots("svc"))[0]
            except Exception:
                return False
            return slot.pod_id == pod.pod_id and slot.lease_live

        await wait_for(renewed_by_pod, within=20, what="lease renewed after the restart")
        await asyncio.sleep(1.5)
        assert await renewed_by_pod()
        assert [e["pid"] for e in read_log(runtime_log) if e["event"] == "load"] == [load["pid"]]
