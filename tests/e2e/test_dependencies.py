"""A service's requirements become a dependency layer its pods import: resolved once per lock, shared."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from dormant import Client
from dormant_catalog import open_catalog
from dormant_catalog.layers import dependency_layer
from dormant_codegen import CodegenError, build
from dormant_layers import LayerStore

from .mesh import PROBE, Mesh, copy_service
from .wheels import local_index, make_wheel

MODULE = "dormant_testdep_alpha"


def _service(tmp: Path, folder: str, name: str, requirements: str) -> Path:
    service = copy_service(PROBE, tmp / folder)
    handler = service / "probe.py"
    handler.write_text(handler.read_text().replace('@service("probe-service"', f'@service("{name}"'))
    (service / "requirements.txt").write_text(requirements)
    return service


@pytest.fixture
def wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "wheels"
    source = 'VALUE = "alpha 1.0 from the layer"\n'
    make_wheel(folder, "dormant-testdep-alpha", "1.0", {f"{MODULE}.py": source})
    local_index(monkeypatch, folder)
    return folder


async def test_requirements_are_importable_in_the_pod_and_shared(
    mesh: Mesh, tmp_path: Path, wheels: Path
) -> None:
    with pytest.raises(ModuleNotFoundError):
        __import__(MODULE)  # only the layer has it
    first = _service(tmp_path, "svc-a", "deps-a", "# what we need\ndormant-testdep-alpha==1.0\n")
    second = _service(tmp_path, "svc-b", "deps-b", "dormant-testdep-alpha\n")
    service, version = await mesh.publish(first)  # the import check imports it from the layer too
    await mesh.deploy(service, version)
    mesh.start_pod("pod-1")
    await mesh.wait_serving(service, version=version)
    async with Client(mesh.broker_url) as client:
        answer = await client.call(service, "module", {"name": MODULE})
    assert answer["value"] == "alpha 1.0 from the layer"
    assert str(mesh.work_root / "pod-1" / "layers") in answer["file"]

    other, other_version = await mesh.publish(second)
    catalog = await open_catalog(mesh.catalog_url)
    try:
        dep_a = await catalog.db.run(dependency_layer, service, version)
        dep_b = await catalog.db.run(dependency_layer, other, other_version)
    finally:
        await catalog.close()
    assert dep_a is not None and dep_b is not None
    assert dep_a == dep_b  # same resolved set: the same image and lock
    store = LayerStore(mesh.layer_store)
    assert [n for n in store.names() if n.startswith("dormant-deps-")] == [dep_a[0].split("@")[0]]
    layer_digest = store.resolve(dep_a[0]).layer_digest
    blobs = {p.name for p in (mesh.layer_store / "blobs" / "sha256").iterdir()}
    assert layer_digest.removeprefix("sha256:") in blobs
    # Rebuilding resolves again but installs nothing: the layer of that lock is reused.
    again = await asyncio.to_thread(build, second, store)
    assert again.dependencies is not None and again.dependencies.reused


def test_an_unresolvable_requirement_fails_the_build_with_pips_message(tmp_path: Path, wheels: Path) -> None:
    service = _service(tmp_path, "svc-bad", "deps-bad", "dormant-testdep-alpha==1.0\nno-such-dist==9.9\n")
    with pytest.raises(CodegenError) as caught:
        build(service, LayerStore(tmp_path / "store"))
    [diagnostic] = caught.value.diagnostics
    assert diagnostic.path.endswith("requirements.txt")
    assert diagnostic.line == 2
    assert re.search(r"No matching distribution found for no-such-dist==9\.9", diagnostic.message)
    assert not (tmp_path / "store" / "index.json").exists() or not LayerStore(tmp_path / "store").names()
