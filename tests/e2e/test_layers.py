"""Shared layers attached to a function: a real pod imports from them in attach order; limits refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from dormant import Client
from dormant_catalog import open_catalog
from dormant_catalog.layers import (
    MAX_ATTACHED_BYTES,
    LayerLimitExceeded,
    attach_layers,
    attached_layers,
    publish_layer_version,
)
from dormant_cli import main as cli

from .mesh import PROBE, Mesh

MODULE = "dormant_shared_probe"


def _layer(tmp: Path, name: str, value: str) -> Path:
    folder = tmp / name
    (folder / "python").mkdir(parents=True)
    (folder / "python" / f"{MODULE}.py").write_text(f"VALUE = {value!r}\n")
    return folder


def _cli(mesh: Mesh, capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    flags = ["--catalog-url", mesh.catalog_url, "--json"]
    store = ["--layer-store", str(mesh.layer_store)] if args[1] == "publish" else []
    assert cli([*args, *flags, *store]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


async def test_attached_layers_are_imported_in_attach_order(
    mesh: Mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service, version = await mesh.publish(PROBE)
    await mesh.deploy(service, version)
    first = await asyncio.to_thread(_cli, mesh, capsys, "layer", "publish", str(_layer(tmp_path, "one", "1")))
    second = await asyncio.to_thread(
        _cli, mesh, capsys, "layer", "publish", str(_layer(tmp_path, "two", "2"))
    )
    assert (first["reference"], second["reference"]) == ("one:1", "two:1")
    again = await asyncio.to_thread(_cli, mesh, capsys, "layer", "publish", str(tmp_path / "one"))
    assert again["reference"] == "one:1" and again["created"] is False  # same content: same version

    attached = await asyncio.to_thread(_cli, mesh, capsys, "layer", "attach", service, "two:1", "one:1")
    assert [layer["reference"] for layer in attached["layers"]] == ["two:1", "one:1"]  # type: ignore[index]
    mesh.start_pod("pod-1")
    await mesh.wait_serving(service, version=version)
    async with Client(mesh.broker_url) as client:
        answer = await client.call(service, "module", {"name": MODULE})
        assert answer["value"] == "2"  # the first attached layer wins

        # Re-attaching in the other order is a new generation: the pod reloads with the new path.
        await asyncio.to_thread(_cli, mesh, capsys, "layer", "attach", service, "one:1", "two:1")
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while (answer := await client.call(service, "module", {"name": MODULE}))["value"] != "1":
            assert loop.time() < end, f"still {answer} after a re-attach\n{mesh.pod_log('pod-1')[-3000:]}"
            await asyncio.sleep(0.2)


async def test_the_count_and_size_limits_are_refused(mesh: Mesh) -> None:
    service, _ = await mesh.publish(PROBE, import_check=False)
    catalog = await open_catalog(mesh.catalog_url)
    try:
        refs = []
        for n in range(6):
            record, _ = await catalog.db.run(
                publish_layer_version,
                f"l{n}",
                layer_image=f"l{n}@sha256:{n:064x}",
                unpacked_bytes=1,
                actor="t",
            )
            refs.append(record.reference)
        with pytest.raises(LayerLimitExceeded, match="at most 5 layers") as caught:
            await catalog.db.run(attach_layers, service, refs, actor="t")
        assert caught.value.limit == "count"
        assert len((await catalog.db.run(attach_layers, service, refs[:5], actor="t"))[0]) == 5

        half = MAX_ATTACHED_BYTES // 2 + 1
        big = []
        for name in ("big-a", "big-b"):
            record, _ = await catalog.db.run(
                publish_layer_version,
                name,
                layer_image=f"{name}@sha256:{'a' * 64}",
                unpacked_bytes=half,
                actor="t",
            )
            big.append(record.reference)
        with pytest.raises(LayerLimitExceeded, match="250 MB") as caught:
            await catalog.db.run(attach_layers, service, big, actor="t")
        assert caught.value.limit == "bytes"
        with pytest.raises(LayerLimitExceeded):
            await catalog.db.run(
                publish_layer_version,
                "huge",
                layer_image="huge@sha256:" + "b" * 64,
                unpacked_bytes=MAX_ATTACHED_BYTES + 1,
                actor="t",
            )
        # Refused attachments changed nothing: the five layers are still attached.
        assert [r.reference for r in await catalog.db.run(attached_layers, service)] == refs[:5]
    finally:
        await catalog.close()
