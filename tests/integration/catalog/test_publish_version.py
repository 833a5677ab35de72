"""``dormant_codegen.publish.publish_version``: the one publish path (CLI and gateway upload) builds,
pushes and registers; unchanged code publishes no new version; the import check runs only when asked
(the gateway never imports uploaded code)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dormant import wire
from dormant_catalog import Catalog
from dormant_codegen import CodegenError
from dormant_codegen.publish import WrongService, publish_version
from dormant_layers import LayerStore

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "codegen"


def copy_service(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "import_check", tmp_path / "svc"))


async def test_publish_registers_once_per_image(catalog: Catalog, tmp_path: Path) -> None:
    service_dir = copy_service(tmp_path)
    store = LayerStore(tmp_path / "layers")
    first = await publish_version(service_dir, store=store, db=catalog.db, actor="ann")
    assert first.created and first.version == 1
    record = await catalog.get_version(first.service, 1)
    assert record is not None and record.app_layer_image == str(first.build.ref)
    assert record.platform_interface == first.build.interface["platformInterface"]
    assert record.topic_mappings == wire.topic_mappings(first.service)
    again = await publish_version(service_dir, store=store, db=catalog.db, actor="ann")
    assert (again.version, again.created) == (1, False)
    (service_dir / "helpers.py").write_text((service_dir / "helpers.py").read_text() + "\n# changed\n")
    changed = await publish_version(service_dir, store=store, db=catalog.db, actor="ann")
    assert (changed.version, changed.created) == (2, True)
    assert [r.action for r in await catalog.list_audit(first.service)] == ["register", "register"]


async def test_another_service_is_refused_before_it_is_registered(catalog: Catalog, tmp_path: Path) -> None:
    service_dir = copy_service(tmp_path)
    with pytest.raises(WrongService) as caught:
        await publish_version(
            service_dir, store=LayerStore(tmp_path / "layers"), db=catalog.db, actor="ann", service="other"
        )
    assert caught.value.expected == "other"
    assert await catalog.latest_version(caught.value.found) is None


async def test_the_import_check_runs_only_when_asked(catalog: Catalog, tmp_path: Path) -> None:
    service_dir = copy_service(tmp_path)
    handler = service_dir / "handlers.py"
    handler.write_text("import dormant_no_such_package  # noqa\n" + handler.read_text())
    store = LayerStore(tmp_path / "layers")
    with pytest.raises(CodegenError, match="does not import"):
        await publish_version(service_dir, store=store, db=catalog.db, actor="cli", import_check=True)
    published = await publish_version(service_dir, store=store, db=catalog.db, actor="gateway")
    assert published.created  # uploaded code is built, never imported
