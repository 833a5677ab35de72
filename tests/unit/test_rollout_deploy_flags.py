"""``dormant deploy --strategy ...`` flags become the seed-style configuration the catalog parses."""

from __future__ import annotations

import pytest

from dormant_catalog.rollouts import parse_config
from dormant_cli import build_parser
from dormant_cli.deploy_cmd import rollout_config


def _config(*flags: str) -> dict[str, object]:
    return rollout_config(build_parser().parse_args(["deploy", "svc", *flags]))


def test_canary_flags_map_to_increments_interval_and_thresholds() -> None:
    raw = _config(
        "--strategy", "canary", "--steps", "10,50,100", "--interval", "30s",
        "--max-error-rate", "0.05", "--max-p99-ms", "1000",
    )  # fmt: skip
    assert raw == {
        "strategy": "canary",
        "increments": [10, 50, 100],
        "stepDuration": "30s",
        "rollbackThresholds": {"errorRate": 0.05, "latencyP99Ms": 1000.0},
    }
    config = parse_config(raw, from_version=1, to_version=2)
    assert (config.steps, config.interval_s, config.thresholds.success_rate) == ((10, 50, 100), 30.0, 0.95)


@pytest.mark.parametrize(
    ("flags", "steps", "strategy"),
    [
        (["--strategy", "linear", "--linear-step", "25"], (25, 50, 75, 100), "linear"),
        (["--strategy", "blue-green", "--keep-old", "1h"], (0, 100), "blue-green"),
        (["--strategy", "rolling", "--batch-size", "50"], (50, 100), "rolling"),
        (["--strategy", "ab"], (50, 100), "ab"),
    ],
)
def test_each_strategy_parses(flags: list[str], steps: tuple[int, ...], strategy: str) -> None:
    config = parse_config(_config(*flags), from_version=1, to_version=2)
    assert (config.strategy, config.steps) == (strategy, steps)
    assert config.manual_promotion == (strategy == "ab")


def test_bad_steps_are_refused() -> None:
    with pytest.raises(ValueError, match="--steps"):
        _config("--strategy", "canary", "--steps", "10,half")


@pytest.mark.parametrize(
    ("flags", "refused"),
    [
        (["--strategy", "blue-green", "--steps", "10,100"], "--steps does not apply to a blue-green rollout"),
        (["--strategy", "canary", "--batch-size", "2"], "--batch-size does not apply to a canary rollout"),
        (["--strategy", "rolling", "--keep-old", "PT1M"], "--keep-old does not apply to a rolling rollout"),
        (["--strategy", "canary", "--split", "30"], "--split does not apply to a canary rollout"),
    ],
)
def test_a_flag_the_strategy_would_ignore_is_refused(flags: list[str], refused: str) -> None:
    with pytest.raises(ValueError, match=refused):
        _config(*flags)
