"""``dormant_codegen.build``: a deterministic app layer pushed to the layer store, usable once unpacked."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from dormant_codegen import BuildResult, build
from dormant_layers import LayerStore

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "codegen" / "user_service"


def copy_service(dest: Path) -> Path:
    service_dir = Path(shutil.copytree(FIXTURE, dest, ignore=shutil.ignore_patterns("generated")))
    # Things that must stay out of the layer.
    (service_dir / "__pycache__").mkdir()
    (service_dir / "__pycache__" / "handlers.cpython-311.pyc").write_bytes(b"\0junk")
    (service_dir / "stray.pyc").write_bytes(b"\0junk")
    (service_dir / ".env").write_text("SECRET=1\n")
    (service_dir / ".git").mkdir()
    (service_dir / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (service_dir / "tests").mkdir()
    (service_dir / "tests" / "test_handlers.py").write_text("def test_x() -> None: ...\n")
    (service_dir / "README.md").write_text("# user service\n")
    return service_dir


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LayerStore, BuildResult]:
    base = tmp_path_factory.mktemp("build")
    service_dir = copy_service(base / "user_service")
    store = LayerStore(base / "store")
    return service_dir, store, build(service_dir, store)


def test_build_pushes_the_layer_and_returns_the_interface(
    built: tuple[Path, LayerStore, BuildResult],
) -> None:
    service_dir, store, result = built
    interface = json.loads((service_dir / "generated" / "interface.json").read_text())
    assert result.interface == interface
    assert result.ref.name == "user-service"
    assert store.names() == {"user-service": result.ref.manifest_digest}
    layer = store.pull_layer(result.ref)
    assert result.layer_size == len(layer)
    manifest = json.loads(store.read_blob(result.ref.manifest_digest))
    assert manifest["annotations"]["io.dormant.interface-hash"] == interface["interfaceHash"]


def test_layer_contents_are_normalized(built: tuple[Path, LayerStore, BuildResult]) -> None:
    _, store, result = built
    layer = store.pull_layer(result.ref)
    assert layer[3] & 0x08 == 0, "no file name in the gzip header"
    assert layer[4:8] == b"\0\0\0\0", "gzip mtime is 0"
    with tarfile.open(fileobj=io.BytesIO(layer), mode="r:gz") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        app = json.loads(tar.extractfile("dormant-app.json").read())  # type: ignore[union-attr]
    assert names == sorted(names)
    assert names == [
        "README.md",
        "dormant-app.json",
        "generated",
        "generated/__init__.py",
        "generated/asyncapi.json",
        "generated/client.py",
        "generated/dispatch.py",
        "generated/interface.json",
        "generated/models.py",
        "generated/schemas.bundle.json",
        "generated/typescript",
        "generated/typescript/client.ts",
        "generated/typescript/models.ts",
        "handlers.py",
        "schemas",
        "schemas/Address.json",
        "schemas/Country.json",
        "schemas/users.json",
    ]
    for member in members:
        assert (member.mtime, member.uid, member.gid, member.uname, member.gname) == (0, 0, 0, "", "")
        assert member.mode == (0o755 if member.isdir() else 0o644)
        assert member.isdir() or member.isfile()
    assert app == {
        "service": "user-service",
        "interfaceHash": result.interface["interfaceHash"],
        "baseRuntime": "dormant-python:1",
        "platformInterface": "dormant/1",
        "functions": ["createUser", "getUser"],
    }


def test_same_input_gives_the_same_digest_from_any_path(
    built: tuple[Path, LayerStore, BuildResult], tmp_path: Path
) -> None:
    service_dir, store, first = built
    assert build(service_dir, store) == first
    elsewhere = copy_service(tmp_path / "a" / "different" / "place")
    other_store = LayerStore(tmp_path / "other-store")
    assert build(elsewhere, other_store).ref == first.ref

    (elsewhere / "handlers.py").write_text((elsewhere / "handlers.py").read_text() + "\n# changed\n")
    changed = build(elsewhere, other_store)
    assert changed.ref.layer_digest != first.ref.layer_digest
    assert changed.interface["interfaceHash"] == first.interface["interfaceHash"]


def test_unpacked_layer_serves_the_generated_dispatch(
    built: tuple[Path, LayerStore, BuildResult], tmp_path: Path
) -> None:
    _, store, result = built
    app_dir = store.unpack(result.ref, tmp_path / "app")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("libs/python", "codegen")),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    code = (
        "import importlib, sys; sys.path.insert(0, sys.argv[1]); "
        "spec = importlib.import_module('generated.dispatch').SERVICE; "
        "print(spec.name, sorted(spec.functions), spec.interface_hash)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(app_dir)], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [
        "user-service",
        "['createUser',",
        "'getUser']",
        result.interface["interfaceHash"],
    ]
