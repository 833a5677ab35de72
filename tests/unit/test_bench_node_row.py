"""bench/run.py's Node.js runtime row (``--only node``): its table rows and ratios, the refusal of an
explicit ``--only node`` where the Node runtime cannot run, and bench-node-service being the twin of
bench-service (the same schemas). The measurement itself is run by ``bash bench/run.sh --only node``."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench_run() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run_under_test", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _figures(p50: float, p99: float, calls_s: float) -> dict[str, Any]:
    return {"latency": {"p50_ms": p50, "p99_ms": p99}, "throughput": {"calls_per_s": calls_s}}


def test_node_rows_are_ratios_against_the_same_run(bench_run: ModuleType) -> None:
    rows = bench_run.node_rows(
        {
            "echo": _figures(0.5, 1.0, 4000.0),
            "faststream": _figures(0.25, 2.0, 2000.0),
            "dormant": _figures(1.0, 4.0, 5000.0),
            "node": _figures(1.5, 3.0, 6000.0),
        }
    )
    by_figure = {row[0]: row for row in rows}
    p50 = by_figure["Node runtime: warm call p50 (ms)"]
    assert p50[1] == "1.500"
    assert "3.00x echo (0.500)" in p50[2]
    assert "6.00x FastStream (0.250)" in p50[2]
    assert "1.50x Python runtime (1.000)" in p50[2]
    p99 = by_figure["Node runtime: warm call p99 (ms)"]
    assert "3.00x echo (1.000)" in p99[2] and "0.75x Python runtime (4.000)" in p99[2]
    put = by_figure["Node runtime: calls/s, 64 in flight"]
    assert put[1] == "6,000"
    assert put[2] == "1.50x echo (4,000); 3.00x FastStream (2,000); 1.20x Python runtime (5,000)"
    assert "Node runtime: calls/s" in bench_run.table(rows)


def test_only_node_is_refused_where_the_node_runtime_cannot_run(
    bench_run: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_run, "NODE_MAIN", tmp_path / "missing" / "main.js")
    monkeypatch.setattr(bench_run, "ROOT", tmp_path)
    why = bench_run.node_ready()
    assert why is not None and "missing/main.js" in why
    with pytest.raises(SystemExit) as exited:
        asyncio.run(bench_run.main(["--only", "node"]))
    assert exited.value.code == 2
    assert "--only node: " in capsys.readouterr().err


def test_only_rejects_an_unknown_figure(bench_run: ModuleType) -> None:
    with pytest.raises(SystemExit) as exited:
        asyncio.run(bench_run.main(["--only", "nodejs"]))
    assert exited.value.code == 2


def test_bench_node_service_is_the_twin_of_bench_service() -> None:
    services = ROOT / "bench" / "services"
    python_schemas = sorted(p.name for p in (services / "bench-service" / "schemas").iterdir())
    node_schemas = sorted(p.name for p in (services / "bench-node-service" / "schemas").iterdir())
    assert node_schemas == python_schemas
    for name in python_schemas:
        python_text = (services / "bench-service" / "schemas" / name).read_text()
        assert (services / "bench-node-service" / "schemas" / name).read_text() == python_text
    source = (services / "bench-node-service" / "src" / "service.ts").read_text()
    assert '@service("bench-node-service", { auth: "off" })' in source
    assert "return { text: input.text };" in source
