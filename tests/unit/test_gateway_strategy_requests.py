"""``POST /api/v1/deployments`` rollout requests (pure logic): the seed's bodies map onto the catalog
configuration ``dormant deploy --strategy`` builds, and every unknown key or bad value is a
``ValidationError`` naming its field, before or when the catalog parses it."""

from __future__ import annotations

from typing import Any

import pytest

from dormant.errors import ValidationError
from dormant_catalog.rollouts import parse_config
from dormant_catalog.rollouts.config import RolloutSettingError
from dormant_gateway.api.strategies import field_error, rollout_config, strategy_of

SEED = {
    "Canary": {
        "canaryPercentage": 10,
        "canaryDuration": "PT10M",
        "rollbackOnErrorRate": 0.05,
        "rollbackOnLatencyP99": 1000,
    },
    "BlueGreen": {"testDuration": "PT5M", "switchType": "Instant", "keepBlue": "PT1H"},
    "Rolling": {"batchSize": 25, "batchDuration": "PT5M", "rollbackOnFailure": True},
    "ABTesting": {
        "versionA": "v1",
        "versionB": "v2",
        "trafficSplit": {"v1": 50, "v2": 50},
        "testDuration": "PT1H",
        "manualPromotion": True,
    },
}


def _settings(strategy: str, config: dict[str, Any]) -> Any:
    return parse_config(rollout_config(strategy_of(strategy), config), from_version=1, to_version=2)


def test_the_seed_bodies_become_the_cli_configuration() -> None:
    canary = _settings("Canary", SEED["Canary"])
    assert canary.strategy == "canary" and canary.steps == (10, 100) and canary.interval_s == 600
    assert canary.thresholds.error_rate == 0.05 and canary.thresholds.latency_p99_ms == 1000
    pattern = {
        "strategy": "Canary",
        "canaryPercentage": 10,
        "canaryDuration": "PT10M",
        "increments": [10, 50, 100],
        "rollbackThresholds": {"errorRate": 0.05, "latencyP99Ms": 1000, "successRate": 0.95},
    }
    assert _settings("Canary", pattern).steps == (10, 50, 100)
    blue = _settings("BlueGreen", SEED["BlueGreen"])
    assert blue.steps == (0, 100) and blue.interval_s == 300 and blue.retire_after_s == 3600
    rolling = _settings("Rolling", SEED["Rolling"])
    assert rolling.strategy == "rolling" and rolling.steps == (25, 50, 75, 100) and rolling.interval_s == 300
    ab = _settings("ABTesting", SEED["ABTesting"])
    assert ab.strategy == "ab" and ab.steps == (50, 100) and ab.manual_promotion and ab.interval_s == 3600
    linear = _settings("Linear", {"linearPercentage": 25, "linearInterval": "30s"})
    assert linear.steps == (25, 50, 75, 100) and linear.interval_s == 30
    # The CLI's flags give the same stored configuration as the seed's keys.
    cli = parse_config(
        {"strategy": "canary", "increments": [10, 100], "stepDuration": "PT10M",
         "rollbackThresholds": {"errorRate": 0.05, "latencyP99Ms": 1000}},
        from_version=1, to_version=2,
    )  # fmt: skip
    assert cli.to_json() == canary.to_json()


@pytest.mark.parametrize(
    ("strategy", "config", "field"),
    [
        ("Canary", {"canaryPercent": 10}, "config.canaryPercent"),
        ("Canary", {"batchSize": 25}, "config.batchSize"),  # a rolling key is not a canary one
        ("Canary", {"canaryDuration": "PT1M", "stepDuration": "PT1M"}, "config.canaryDuration"),
        ("Canary", {"canaryPercentage": 20, "increments": [10, 100]}, "config.canaryPercentage"),
        ("Canary", {"rollbackThresholds": {"errorRate": 0.1}, "rollbackOnErrorRate": 0.1},
         "config.rollbackOnErrorRate"),
        ("Canary", {"rollbackThresholds": {"p99": 5}}, "config.rollbackThresholds.p99"),
        ("Canary", {"manualPromotion": "yes"}, "config.manualPromotion"),
        ("BlueGreen", {"switchType": "Gradual"}, "config.switchType"),
        ("BlueGreen", {"keepBlue": "PT1H", "keepOld": "PT1H"}, "config.keepBlue"),
        ("BlueGreen", {"canaryPercentage": 10}, "config.canaryPercentage"),
        ("Rolling", {"rollbackOnFailure": False}, "config.rollbackOnFailure"),
        ("Rolling", {"keepOld": "PT1M"}, "config.keepOld"),  # rolling keeps no old version
        ("ABTesting", {"versionB": ["v2"]}, "config.versionB"),
        ("Canary", {"strategy": "Rolling"}, "config.strategy"),
    ],
)  # fmt: skip
def test_unknown_keys_and_bad_types_are_refused_naming_the_field(
    strategy: str, config: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        rollout_config(strategy_of(strategy), config)
    assert caught.value.details == {"field": field}, caught.value


@pytest.mark.parametrize(
    ("strategy", "config", "field"),
    [
        ("Canary", {"canaryPercentage": 140}, "config.canaryPercentage"),
        ("Canary", {"increments": [50, 10]}, "config.increments"),
        ("Canary", {"canaryDuration": "ten minutes"}, "config.canaryDuration"),
        ("Canary", {"rollbackOnErrorRate": 5}, "config.rollbackOnErrorRate"),
        ("Canary", {"rollbackThresholds": {"latencyP99Ms": -1}}, "config.rollbackThresholds.latencyP99Ms"),
        ("Canary", {"minSamples": 0}, "config.minSamples"),
        ("Rolling", {"batchSize": 0}, "config.batchSize"),
        ("BlueGreen", {"testDuration": "-1s"}, "config.testDuration"),
        ("Rolling", {"batchDuration": ["PT1M"]}, "config.batchDuration"),
        ("ABTesting", {"trafficSplit": {"v1": 60, "v2": 60}}, "config.trafficSplit"),
        ("ABTesting", {"trafficSplit": {"v7": 50}}, "config.trafficSplit"),
        ("ABTesting", {"versionA": "v3"}, "config.versionA"),
    ],
)
def test_bad_values_are_refused_naming_the_field(strategy: str, config: dict[str, Any], field: str) -> None:
    raw = rollout_config(strategy_of(strategy), config)  # well-typed: the catalog checks the values
    with pytest.raises(RolloutSettingError) as caught:
        parse_config(raw, from_version=1, to_version=2)
    assert field_error(caught.value).details == {"field": field}


def test_strategy_names() -> None:
    names = ("AllAtOnce", "Canary", "BlueGreen", "Rolling", "ABTesting", "Linear")
    assert [strategy_of(s) for s in names] == [
        "all-at-once",
        "canary",
        "blue-green",
        "rolling",
        "ab",
        "linear",
    ]
    for bad in ("Sideways", 3):
        with pytest.raises(ValidationError) as caught:
            strategy_of(bad)
        assert caught.value.details == {"field": "strategy"}
