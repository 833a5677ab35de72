"""Autoscaling settings (``dormant_catalog.scaling``): what is accepted, what is refused and why, and
the replica count a load asks for (issue 12, item 6; FR-FN-006/007)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dormant import wire
from dormant_catalog.scaling import (
    ScalingSettingError,
    check_scaling,
    desired_replicas,
    load_replicas,
    mean_latency_ms,
    settings_from_json,
)
from dormant_cli import build_parser
from dormant_cli.common import CommandError
from dormant_cli.scale_cmd import changes_from

NOW = datetime(2026, 12, 7, 14, 30, 10, tzinfo=UTC)


def settings(**given: Any) -> Any:
    return settings_from_json(check_scaling(given))


def test_defaults_fill_in_and_cooldowns_are_stored_as_iso_8601() -> None:
    assert check_scaling({"minInstances": 0, "scaleDownCooldown": 90, "scaleUpCooldown": "2s"}) == {
        "minInstances": 0,
        "maxInstances": 100,
        "targetConcurrency": 10,
        "scaleUpCooldown": "PT2S",
        "scaleDownCooldown": "PT90S",
        "schedules": [],
    }
    assert check_scaling({"scaleDownCooldown": "PT5M"})["scaleDownCooldown"] == "PT300S"


@pytest.mark.parametrize(
    ("given", "field"),
    [
        ({"minInstance": 1}, "/minInstance"),
        ({"keepWarmEnabled": True}, "/keepWarmEnabled"),
        ({"minInstances": -1}, "/minInstances"),
        ({"minInstances": 1001}, "/minInstances"),
        ({"minInstances": True}, "/minInstances"),
        ({"minInstances": 1.5}, "/minInstances"),
        ({"minInstances": 0, "maxInstances": 0}, "/maxInstances"),
        ({"minInstances": 5, "maxInstances": 4}, "/maxInstances"),
        ({"maxInstances": 1001}, "/maxInstances"),
        ({"targetConcurrency": 0}, "/targetConcurrency"),
        ({"targetConcurrency": 1001}, "/targetConcurrency"),
        ({"scaleUpCooldown": "soon"}, "/scaleUpCooldown"),
        ({"scaleDownCooldown": -1}, "/scaleDownCooldown"),
        ({"scaleDownCooldown": "P2D"}, "/scaleDownCooldown"),
        ({"scaleDownCooldown": None}, "/scaleDownCooldown"),
        ({"schedules": {"cron": "* * * * *"}}, "/schedules"),
        ({"schedules": [{"cron": "* * * * *"}]}, "/schedules/0/minInstances"),
        ({"schedules": [{"cron": "* * * * *", "minInstances": 1, "tz": "x"}]}, "/schedules/0/tz"),
        ({"schedules": [{"cron": "61 * * * *", "minInstances": 1}]}, "/schedules/0/cron"),
        ({"schedules": [{"cron": "* * * * * *", "minInstances": 1}]}, "/schedules/0/cron"),
        (
            {"maxInstances": 3, "schedules": [{"cron": "* * * * *", "minInstances": 4}]},
            "/schedules/0/minInstances",
        ),
    ],
)
def test_refused_settings_name_their_key(given: dict[str, Any], field: str) -> None:
    with pytest.raises(ScalingSettingError) as caught:
        check_scaling(given)
    assert caught.value.field == field
    assert str(caught.value)


def test_a_non_object_is_refused() -> None:
    with pytest.raises(ScalingSettingError):
        check_scaling([1])


def test_load_is_calls_per_second_times_latency_over_the_target() -> None:
    # 20 calls/s x 0.5 s = 10 in flight; 4 per replica -> 3 replicas.
    assert load_replicas(60, 3.0, 500.0, 4) == (3, 10.0)
    assert load_replicas(0, 3.0, 500.0, 4) == (0, 0.0)
    assert load_replicas(1, 3.0, 0.5, 4)[0] == 1  # any call needs a replica


def test_mean_latency_counts_each_bucket_at_its_middle() -> None:
    assert mean_latency_ms({}) == 0.0
    assert mean_latency_ms({500.0: 2, 1000.0: 2}) == pytest.approx((250 + 750) / 2)
    assert mean_latency_ms({1.0: 1, float("inf"): 1}) == pytest.approx((0.5 + 1.0) / 2)


def test_desired_replicas_is_clamped_between_the_floor_and_max() -> None:
    s = settings(minInstances=2, maxInstances=5, targetConcurrency=2)
    assert desired_replicas(s, calls=0, seconds=3, latency_ms=0, now=NOW).replicas == 2
    assert desired_replicas(s, calls=24, seconds=3, latency_ms=500, now=NOW).replicas == 2  # 4 in flight
    assert desired_replicas(s, calls=36, seconds=3, latency_ms=500, now=NOW).replicas == 3  # 6 in flight
    capped = desired_replicas(s, calls=600, seconds=3, latency_ms=500, now=NOW)
    assert capped.replicas == 5 and "maxInstances 5" in capped.reason
    floor = desired_replicas(s, calls=0, seconds=3, latency_ms=0, now=NOW)
    assert "minInstances 2" in floor.reason


def test_scale_to_zero_only_without_calls() -> None:
    s = settings(minInstances=0, maxInstances=3)
    assert desired_replicas(s, calls=0, seconds=3, latency_ms=0, now=NOW).replicas == 0
    assert desired_replicas(s, calls=1, seconds=3, latency_ms=2, now=NOW).replicas == 1


def test_pre_provisioned_concurrency_is_a_floor_under_max() -> None:
    s = settings(minInstances=0, maxInstances=4)
    d = desired_replicas(s, calls=0, seconds=3, latency_ms=0, now=NOW, pre_provisioned=3)
    assert d.replicas == 3 and "preProvisionedConcurrency 3" in d.reason
    assert desired_replicas(s, calls=0, seconds=3, latency_ms=0, now=NOW, pre_provisioned=9).replicas == 4


def test_a_schedule_raises_the_floor_while_its_cron_matches_the_minute() -> None:
    s = settings(
        minInstances=0,
        maxInstances=5,
        schedules=[{"cron": f"{NOW.minute} {NOW.hour} * * *", "minInstances": 3}],
    )
    during = desired_replicas(s, calls=0, seconds=3, latency_ms=0, now=NOW)
    assert during.replicas == 3 and "schedule" in during.reason
    after = NOW + timedelta(minutes=1)
    assert desired_replicas(s, calls=0, seconds=3, latency_ms=0, now=after).replicas == 0


def test_the_wake_topic_is_the_wires() -> None:
    assert wire.wake_topic("user-service") == "mesh/wake/user-service"
    assert wire.parse_wake_topic("mesh/wake/user-service") == "user-service"
    assert wire.parse_wake_topic("mesh/wake/a/b") is None
    assert wire.parse_wake_topic("mesh/stats/a") is None
    assert wire.wake_filter() == "mesh/wake/+"


def test_the_cli_flags_map_to_the_settings() -> None:
    args = build_parser().parse_args(
        [
            "scale",
            "svc",
            "--min",
            "0",
            "--max",
            "4",
            "--target-concurrency",
            "2",
            "--schedule",
            "* 9-17 * * 1-5=2",
        ]
    )
    assert changes_from(args) == {
        "minInstances": 0,
        "maxInstances": 4,
        "targetConcurrency": 2,
        "schedules": [{"cron": "* 9-17 * * 1-5", "minInstances": 2}],
    }
    with pytest.raises(CommandError):
        changes_from(build_parser().parse_args(["scale", "svc", "--schedule", "* * * * *"]))
    with pytest.raises(CommandError):
        changes_from(build_parser().parse_args(["scale", "svc", "--off", "--min", "1"]))
