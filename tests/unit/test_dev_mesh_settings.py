"""Settings fall back to the running dev mesh of the project (``.dormant/dev/mesh.json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dormant.config import DEFAULT_BROKER_URL, Settings, dev_mesh

MESH = {
    "brokerUrl": "mqtt://127.0.0.1:41883",
    "catalogUrl": "postgresql://x@127.0.0.1:45432/d",
    "layerStore": "/l",
}


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DORMANT_BROKER_URL", "DORMANT_CATALOG_URL", "DORMANT_LAYER_STORE"):
        monkeypatch.delenv(name, raising=False)


def _project(root: Path) -> Path:
    record = root / ".dormant" / "dev" / "mesh.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({**MESH, "pods": 2}))
    (root / "svc" / "schemas").mkdir(parents=True)
    return root


def test_a_shell_in_the_project_or_below_finds_the_dev_mesh(
    tmp_path: Path, no_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path)
    monkeypatch.chdir(root / "svc" / "schemas")
    settings = Settings.from_env()
    assert settings.broker_url == MESH["brokerUrl"]
    assert settings.catalog_url == MESH["catalogUrl"]
    assert settings.layer_store == Path("/l")
    assert dev_mesh() == MESH  # non-string fields are left out


def test_the_environment_and_arguments_win_over_the_dev_mesh(
    tmp_path: Path, no_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(_project(tmp_path))
    monkeypatch.setenv("DORMANT_BROKER_URL", "mqtt://elsewhere:1")
    assert Settings.from_env().broker_url == "mqtt://elsewhere:1"
    assert Settings.from_env(broker_url="mqtt://arg:2").broker_url == "mqtt://arg:2"
    assert Settings.from_env().catalog_url == MESH["catalogUrl"]


def test_without_a_dev_mesh_the_defaults_hold_and_a_broken_record_is_ignored(
    tmp_path: Path, no_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert Settings.from_env().broker_url == DEFAULT_BROKER_URL
    record = tmp_path / ".dormant" / "dev" / "mesh.json"
    record.parent.mkdir(parents=True)
    record.write_text("{not json")
    assert Settings.from_env().broker_url == DEFAULT_BROKER_URL
