"""``dormant deploy --strategy ...`` and ``dormant rollback`` as a user runs them, against a real
catalog: the flags become the rollout's stored configuration; all-at-once flags stay apart."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from e2e.mesh import ROOT, Mesh, child_env
from rollout_helpers import SERVICE, publish_version

from dormant_catalog import open_catalog


def dormant(mesh: Mesh, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dormant_cli", *args, "--catalog-url", mesh.catalog_url],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        cwd=ROOT,
    )


async def test_deploy_strategies_start_rollouts_through_the_catalog(mesh: Mesh, tmp_path: Path) -> None:
    v1 = await publish_version(mesh, tmp_path)
    v2 = await publish_version(mesh, tmp_path)
    await mesh.deploy(SERVICE, v1, replicas=2)

    canary = dormant(
        mesh, "deploy", SERVICE, "--version", str(v2), "--strategy", "canary", "--steps", "10,50,100",
        "--interval", "30s", "--max-error-rate", "0.05", "--max-p99-ms", "1000",
    )  # fmt: skip
    assert canary.returncode == 0, canary.stderr
    assert canary.stdout.startswith(f"started canary rollout #1 of {SERVICE} v{v1} -> v{v2}: 10 % -> 50 %")
    async with await open_catalog(mesh.catalog_url) as catalog:
        record = await catalog.active_rollout(SERVICE)
    assert record is not None and record.to_version == v2
    settings = record.settings
    assert (settings.strategy, settings.steps, settings.interval_s) == ("canary", (10, 50, 100), 30.0)
    assert (settings.thresholds.error_rate, settings.thresholds.latency_p99_ms) == (0.05, 1000.0)

    busy = dormant(mesh, "deploy", SERVICE, "--version", str(v2), "--strategy", "linear")
    assert busy.returncode == 1 and "in progress" in busy.stderr, busy.stderr
    back = dormant(mesh, "rollback", SERVICE)
    assert back.returncode == 0 and f"to v{v1}" in back.stdout, back.stderr

    ab = dormant(
        mesh,
        "deploy",
        SERVICE,
        "--strategy",
        "ab",
        "--split",
        "30",
        "--interval",
        "PT1H",
        "--min-samples",
        "5",
    )  # the latest version by default
    assert ab.returncode == 0, ab.stderr
    assert "30 % -> 100 %" in ab.stdout and "waits for dormant promote" in ab.stdout, ab.stdout
    async with await open_catalog(mesh.catalog_url) as catalog:
        record = await catalog.active_rollout(SERVICE)
        assert record is not None and record.strategy == "ab" and record.settings.manual_promotion
        assert record.settings.thresholds.min_samples == 5
        await catalog.rollback(SERVICE, actor="test")

    mixed = dormant(mesh, "deploy", SERVICE, "--steps", "10,100")
    assert mixed.returncode == 1 and "--steps need a --strategy" in mixed.stderr, mixed.stderr
    replicas = dormant(mesh, "deploy", SERVICE, "--strategy", "rolling", "--replicas", "3")
    assert replicas.returncode == 1 and "--replicas is for all-at-once" in replicas.stderr
