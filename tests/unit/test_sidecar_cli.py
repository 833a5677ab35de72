"""``python -m dormant_sidecar`` options: flags win over DORMANT_* variables, which win over defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dormant_sidecar.cli import build_parser, pod_from_args


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DORMANT_BROKER_URL", "mqtt://broker:1883")
    monkeypatch.setenv("DORMANT_CATALOG_URL", "postgresql://db/dormant")
    monkeypatch.setenv("DORMANT_LAYER_STORE", str(tmp_path / "store"))
    monkeypatch.delenv("DORMANT_WORK_DIR", raising=False)
    pod = pod_from_args(build_parser().parse_args([]))
    assert (pod.broker_url, pod.catalog_url) == ("mqtt://broker:1883", "postgresql://db/dormant")
    assert pod.layer_store == tmp_path / "store"
    assert pod.work_dir == tmp_path / "work"
    assert pod.base_images == ("dormant-python:1",) and pod.platform_interfaces == ("dormant/1",)
    assert (pod.lease_s, pod.poll_interval_s, pod.drain_timeout_s) == (10.0, 2.0, 30.0)
    assert pod.runtime_cmd == (sys.executable, "-m", "dormant_runtime")


def test_flags_win(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DORMANT_CATALOG_URL", "postgresql://env/dormant")
    args = build_parser().parse_args(
        [
            "--catalog-url", "postgresql://flag/dormant",
            "--work-dir", str(tmp_path / "w"),
            "--pod-id", "p-1",
            "--base-image", "dormant-python:1", "--base-image", "dormant-node:1",
            "--lease", "3", "--runtime-cmd", "python3 -m my_runtime --fast",
        ]
    )  # fmt: skip
    pod = pod_from_args(args)
    assert pod.catalog_url == "postgresql://flag/dormant"
    assert pod.pod_id == "p-1" and pod.work_dir == tmp_path / "w"
    assert pod.base_images == ("dormant-python:1", "dormant-node:1")
    assert pod.lease_s == 3.0
    assert pod.runtime_cmd == ("python3", "-m", "my_runtime", "--fast")


def test_generated_pod_ids_are_unique(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--layer-store", str(tmp_path)])
    args.pod_id = None
    assert pod_from_args(args).pod_id != pod_from_args(args).pod_id
