"""A function's autoscaling settings and the replica count they ask for (pure logic, no I/O).

The settings (FR-FN-006) are stored in ``gateway_functions.scaling`` as the JSON ``check_scaling``
returns: ``minInstances`` (0..1000; 0 scales to zero), ``maxInstances`` (at least max(1,
minInstances), at most 1000), ``targetConcurrency`` (calls in flight one replica should carry, 1..1000),
``scaleUpCooldown`` and ``scaleDownCooldown`` (ISO 8601 durations or seconds) and ``schedules``: a list
of ``{"cron": "<5-field expression, UTC>", "minInstances": N}`` that raise the floor while the current
minute matches the expression. Unknown keys are refused (``ScalingSettingError`` names the key).

``desired_replicas`` is what the controller's autoscaler (``controller.autoscale``) aims for:
clamp(ceil(calls/s x mean latency / targetConcurrency), floor, maxInstances), the floor being the
largest of ``minInstances``, the function's ``preProvisionedConcurrency`` and every active schedule's
``minInstances``. calls/s x latency is the concurrency by Little's law: runtimes publish answered
calls and a latency histogram per second, not the calls in flight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from croniter import croniter

from .errors import InvalidCatalogRequest
from .rollouts.durations import format_duration, parse_duration

MAX_INSTANCES_LIMIT = 1000
MAX_SCHEDULES = 20
DEFAULTS: dict[str, Any] = {
    "minInstances": 1,
    "maxInstances": 100,
    "targetConcurrency": 10,
    "scaleUpCooldown": "PT30S",
    "scaleDownCooldown": "PT5M",
    "schedules": [],
}
"""What a key left out means (the seed's example; scale-to-zero is asked for with minInstances 0)."""
KEYS = frozenset(DEFAULTS)
SCHEDULE_KEYS = frozenset({"cron", "minInstances"})


class ScalingSettingError(InvalidCatalogRequest):
    """A scaling setting that is unknown, malformed or out of range; ``field`` is its JSON pointer."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Schedule:
    cron: str
    min_instances: int

    def active(self, now: datetime) -> bool:
        """True while ``now`` (UTC) falls in a minute the expression matches."""
        return bool(croniter.match(self.cron, now.astimezone(UTC).replace(second=0, microsecond=0)))


@dataclass(frozen=True, slots=True)
class ScalingSettings:
    min_instances: int
    max_instances: int
    target_concurrency: int
    scale_up_cooldown_s: float
    scale_down_cooldown_s: float
    schedules: tuple[Schedule, ...] = ()

    def floor(self, now: datetime, *, pre_provisioned: int = 0) -> tuple[int, str]:
        """The fewest replicas wanted at ``now`` and why."""
        floor, why = self.min_instances, f"minInstances {self.min_instances}"
        if pre_provisioned > floor:
            floor, why = pre_provisioned, f"preProvisionedConcurrency {pre_provisioned}"
        for schedule in self.schedules:
            if schedule.min_instances > floor and schedule.active(now):
                floor, why = schedule.min_instances, f"schedule {schedule.cron!r} (minInstances {floor})"
        return floor, why


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ScalingSettingError(field, f"{field.lstrip('/')} must be an integer from {low} to {high}")
    return value


def _seconds(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ScalingSettingError(field, f"{field.lstrip('/')} must be a duration such as PT30S or seconds")
    try:
        seconds = parse_duration(value)
    except InvalidCatalogRequest as exc:
        raise ScalingSettingError(field, f"{field.lstrip('/')}: {exc}") from None
    if seconds > 86400:
        raise ScalingSettingError(field, f"{field.lstrip('/')} is at most a day (P1D)")
    return seconds


def _schedule(value: Any, index: int) -> dict[str, Any]:
    where = f"/schedules/{index}"
    if not isinstance(value, dict):
        raise ScalingSettingError(where, f'schedules[{index}] must be {{"cron": ..., "minInstances": N}}')
    unknown = sorted(set(value) - SCHEDULE_KEYS)
    if unknown:
        raise ScalingSettingError(f"{where}/{unknown[0]}", f"schedules[{index}]: unknown key {unknown[0]!r}")
    for key in sorted(SCHEDULE_KEYS - set(value)):
        raise ScalingSettingError(f"{where}/{key}", f"schedules[{index}] needs {key!r}")
    cron = value["cron"]
    if not isinstance(cron, str) or len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ScalingSettingError(
            f"{where}/cron", f"schedules[{index}].cron must be a 5-field cron expression, not {cron!r}"
        )
    count = _int(value["minInstances"], f"{where}/minInstances", 0, MAX_INSTANCES_LIMIT)
    return {"cron": cron, "minInstances": count}


def check_scaling(raw: Any) -> dict[str, Any]:
    """The settings to store: every key, defaults filled in, cooldowns as ISO 8601; refuses unknown
    keys and values out of range with a ``ScalingSettingError``."""
    if not isinstance(raw, dict):
        raise ScalingSettingError("", "the scaling settings must be a JSON object")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ScalingSettingError(
            f"/{unknown[0]}", f"unknown scaling setting {unknown[0]!r} (known: {', '.join(sorted(KEYS))})"
        )
    given = {**DEFAULTS, **raw}
    low = _int(given["minInstances"], "/minInstances", 0, MAX_INSTANCES_LIMIT)
    high = _int(given["maxInstances"], "/maxInstances", max(1, low), MAX_INSTANCES_LIMIT)
    target = _int(given["targetConcurrency"], "/targetConcurrency", 1, 1000)
    up = _seconds(given["scaleUpCooldown"], "/scaleUpCooldown")
    down = _seconds(given["scaleDownCooldown"], "/scaleDownCooldown")
    schedules = given["schedules"]
    if not isinstance(schedules, list) or len(schedules) > MAX_SCHEDULES:
        raise ScalingSettingError("/schedules", f"schedules must be a list of at most {MAX_SCHEDULES}")
    checked = [_schedule(s, i) for i, s in enumerate(schedules)]
    for index, schedule in enumerate(checked):
        if schedule["minInstances"] > high:
            raise ScalingSettingError(
                f"/schedules/{index}/minInstances",
                f"schedules[{index}].minInstances ({schedule['minInstances']})"
                f" is above maxInstances ({high})",
            )
    return {
        "minInstances": low,
        "maxInstances": high,
        "targetConcurrency": target,
        "scaleUpCooldown": format_duration(up),
        "scaleDownCooldown": format_duration(down),
        "schedules": checked,
    }


def settings_from_json(stored: dict[str, Any]) -> ScalingSettings:
    """The settings as stored (``check_scaling``'s output) read back."""
    checked = check_scaling(stored)
    return ScalingSettings(
        min_instances=checked["minInstances"],
        max_instances=checked["maxInstances"],
        target_concurrency=checked["targetConcurrency"],
        scale_up_cooldown_s=parse_duration(checked["scaleUpCooldown"]),
        scale_down_cooldown_s=parse_duration(checked["scaleDownCooldown"]),
        schedules=tuple(Schedule(s["cron"], s["minInstances"]) for s in checked["schedules"]),
    )


def mean_latency_ms(histogram: dict[float, int]) -> float:
    """The mean of a latency histogram keyed by bucket upper bound in ms (``inf``: overflow), each
    bucket counted at its middle (the overflow bucket at its lower bound)."""
    total = sum(histogram.values())
    if total == 0:
        return 0.0
    bounds = sorted(histogram)
    finite = [b for b in bounds if b != math.inf]
    weighted = 0.0
    lower = 0.0
    for bound in bounds:
        if bound == math.inf:
            weighted += histogram[bound] * (finite[-1] if finite else 0.0)
            continue
        weighted += histogram[bound] * (lower + bound) / 2
        lower = bound
    return weighted / total


def load_replicas(
    calls: int, seconds: float, latency_ms: float, target_concurrency: int
) -> tuple[int, float]:
    """Replicas that carry ``calls`` answered over ``seconds`` at ``latency_ms`` each with at most
    ``target_concurrency`` in flight per replica, and that concurrency (calls/s x latency in s)."""
    if calls <= 0 or seconds <= 0:
        return 0, 0.0
    concurrency = calls / seconds * latency_ms / 1000
    # Any call at all needs a replica, however short it was.
    return max(1, math.ceil(concurrency / target_concurrency - 1e-9)), concurrency


@dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    reason: str


def desired_replicas(
    settings: ScalingSettings,
    *,
    calls: int,
    seconds: float,
    latency_ms: float,
    now: datetime,
    pre_provisioned: int = 0,
) -> Decision:
    """clamp(load, floor, maxInstances): the replicas the load over the last ``seconds`` asks for
    (``calls`` answered, mean ``latency_ms``), never below the floor nor above ``maxInstances``."""
    load, concurrency = load_replicas(calls, seconds, latency_ms, settings.target_concurrency)
    floor, floor_why = settings.floor(now, pre_provisioned=pre_provisioned)
    floor = min(floor, settings.max_instances)  # maxInstances is the hard cap, pre-provisioning included
    rate = calls / seconds if seconds > 0 else 0.0
    why = (
        f"load {rate:.1f} calls/s x {latency_ms:.0f} ms = {concurrency:.1f} in flight"
        f" / targetConcurrency {settings.target_concurrency} -> {load}"
    )
    if load < floor:
        return Decision(floor, f"{why}, raised to the floor ({floor_why})")
    if load > settings.max_instances:
        return Decision(settings.max_instances, f"{why}, capped at maxInstances {settings.max_instances}")
    return Decision(load, why)
