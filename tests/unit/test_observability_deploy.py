"""The Prometheus scrape configurations and the Grafana dashboard in deploy/observability (issue 13,
item 5): the dashboard's queries name only metrics Dormant exports (``dormant_telemetry.metrics``) and
cover what a rollout is watched by; the scrape configurations scrape /metrics of every component."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # PyYAML, with datamodel-code-generator

from dormant_telemetry import metrics as m

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "observability"
METRIC = re.compile(r"\b(dormant_[a-z0-9_]+)")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    return loaded


def queries(board: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            found.append(query["query"])
    return found


def test_the_dashboard_names_only_metrics_that_exist() -> None:
    exprs = queries(dashboard())
    named = {name for expr in exprs for name in METRIC.findall(expr)}
    assert named, "the dashboard has no queries"
    assert named <= m.exposed_names(), sorted(named - m.exposed_names())


def test_the_dashboard_shows_what_a_rollout_is_watched_by() -> None:
    exprs = " ".join(queries(dashboard()))
    for d in (m.INVOCATIONS, m.ERRORS, m.THROTTLES, m.COLD_STARTS, m.CONCURRENT):
        assert d.exposed_names[0] in exprs, d.name
    assert "histogram_quantile(0.99" in exprs and "dormant_function_duration_seconds_bucket" in exprs
    for d in (m.POOL_FREE, m.POOL_CLAIMED, m.POOL_UNASSIGNED):
        assert d.name in exprs, d.name
    # Per version: the per-function panels split by service and version.
    assert "by (service, version)" in exprs


def test_every_panel_queries_the_chosen_data_source_and_has_a_unique_id() -> None:
    board = dashboard()
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in board["panels"]}) == len(board["panels"])
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"] and all(t["datasource"] == panel["datasource"] for t in panel["targets"])
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]


def test_the_scrape_configurations_scrape_every_component() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"dormant-gateway", "dormant-controller", "dormant-pods"}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics"
        kept = [r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"]
        assert "dormant" in kept and len(kept) == 3
    dev = yaml.safe_load((DEPLOY / "prometheus-dev.yml").read_text())
    [job] = dev["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    # Relative to the configuration file: the checkout's .dormant/dev, where `dormant dev` writes them.
    [files] = [c["files"] for c in job["file_sd_configs"]]
    assert (DEPLOY / files[0]).resolve() == (
        DEPLOY.parents[1] / ".dormant" / "dev" / "prometheus-targets.json"
    )
