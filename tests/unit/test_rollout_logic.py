"""Rollout configuration, durations and threshold judging (pure logic)."""

from __future__ import annotations

import pytest

from dormant_catalog.errors import InvalidCatalogRequest
from dormant_catalog.rollouts import Thresholds, VersionStats, judge, parse_config, parse_duration
from dormant_catalog.rollouts.config import config_from_json


def test_durations_read_iso_8601_and_shorthand() -> None:
    assert parse_duration("PT10M") == 600
    assert parse_duration("PT1H30M") == 5400
    assert parse_duration("P1D") == 86400
    assert parse_duration("PT2.5S") == 2.5
    assert parse_duration("30s") == 30 and parse_duration("500ms") == 0.5 and parse_duration(2) == 2
    for bad in ("P", "PT", "ten", "-1s"):
        with pytest.raises(InvalidCatalogRequest):
            parse_duration(bad)


def test_seed_configurations_give_steps_per_strategy() -> None:
    canary = parse_config(
        {"strategy": "Canary", "canaryPercentage": 10, "canaryDuration": "PT10M", "increments": [10, 50, 100],
         "rollbackThresholds": {"errorRate": 0.05, "latencyP99Ms": 1000, "successRate": 0.95}},
        from_version=1, to_version=2,
    )  # fmt: skip
    assert canary.steps == (10, 50, 100) and canary.interval_s == 600
    linear = parse_config({"strategy": "Linear", "linearPercentage": 25}, from_version=1, to_version=2)
    assert linear.steps == (25, 50, 75, 100)
    blue = parse_config({"strategy": "BlueGreen", "testDuration": "PT5M", "keepBlue": "PT1H"},
                        from_version=1, to_version=2)  # fmt: skip
    assert blue.steps == (0, 100) and blue.retire_after_s == 3600
    assert parse_config({"strategy": "Rolling", "batchSize": 25}, from_version=1, to_version=2).steps == (
        25, 50, 75, 100,
    )  # fmt: skip
    ab = parse_config(
        {"strategy": "ABTesting", "trafficSplit": {"v1": 70, "v2": 30}}, from_version=1, to_version=2
    )
    assert ab.steps == (30, 100) and ab.manual_promotion
    assert config_from_json(canary.to_json()) == canary
    with pytest.raises(InvalidCatalogRequest):
        parse_config({"strategy": "Canary", "increments": [50, 10]}, from_version=1, to_version=2)
    with pytest.raises(InvalidCatalogRequest):
        parse_config({"strategy": "Sideways"}, from_version=1, to_version=2)


def _window(calls: int, ok: int, errors: dict[str, int], counts: list[int]) -> dict[str, object]:
    return {"calls": calls, "ok": ok, "errors": errors, "latency": {"le": [10, 100, 1000], "counts": counts}}


def test_judging_waits_for_samples_then_fails_on_any_breach() -> None:
    thresholds = Thresholds(error_rate=0.05, latency_p99_ms=100, success_rate=0.95, min_samples=10)
    stats = VersionStats()
    stats.add_window(_window(5, 5, {}, [5, 0, 0, 0]))
    assert judge(stats, thresholds).kind == "wait"
    stats.add_window(_window(20, 18, {"NotFound": 2}, [20, 0, 0, 0]))
    assert judge(stats, thresholds).kind == "pass"  # caller errors do not count against a version
    failing = VersionStats()
    failing.add_window(_window(20, 16, {"SystemError": 4}, [20, 0, 0, 0]))
    verdict = judge(failing, thresholds)
    assert verdict.kind == "fail" and "error rate" in verdict.reason and verdict.numbers["errors"] == 4
    slow = VersionStats()
    slow.add_window(_window(20, 20, {}, [0, 0, 20, 0]))
    assert judge(slow, thresholds).kind == "fail" and slow.percentile_ms(0.99) == 1000
