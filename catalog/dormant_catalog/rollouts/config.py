"""A rollout's configuration, read from the seed's JSON form and stored back in it.

Keys (as in the seed): ``strategy`` (``Canary``, ``Linear``, ``BlueGreen``, ``Rolling``, ``ABTesting``,
or the CLI's lowercase names), ``canaryPercentage``, ``canaryDuration``, ``increments``,
``linearPercentage``, ``batchSize``, ``batchDuration``, ``testDuration``, ``keepBlue``,
``trafficSplit``, ``manualPromotion``, ``rollbackThresholds {errorRate, latencyP99Ms, successRate}``
(also ``rollbackOnErrorRate`` / ``rollbackOnLatencyP99``), ``minSamples``, ``force``.
Durations are ISO 8601 (``PT10M``) or shorthand (``30s``).

``check_settings`` is the strict reading the gateway's ``POST /api/v1/deployments`` applies first: only
the keys the strategy reads (``SETTINGS``), each at most once, with the seed's types; anything else is a
``RolloutSettingError`` naming the key. Every error ``parse_config`` raises about a key names it too.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidCatalogRequest
from .durations import format_duration, parse_duration

STRATEGIES = ("canary", "linear", "blue-green", "rolling", "ab")
_ALIASES = {
    "canary": "canary",
    "linear": "linear",
    "bluegreen": "blue-green",
    "blue-green": "blue-green",
    "blue_green": "blue-green",
    "rolling": "rolling",
    "ab": "ab",
    "abtesting": "ab",
    "a/b": "ab",
    "ab-testing": "ab",
}
_COMMON = frozenset(
    {
        "strategy",
        "stepDuration",
        "minSamples",
        "rollbackThresholds",
        "rollbackOnErrorRate",
        "rollbackOnLatencyP99",
        "manualPromotion",
        "force",
    }
)
SETTINGS: dict[str, frozenset[str]] = {
    "canary": _COMMON | {"canaryPercentage", "canaryDuration", "increments", "keepOld"},
    "linear": _COMMON | {"linearPercentage", "linearInterval", "increments", "keepOld"},
    "blue-green": _COMMON | {"testDuration", "switchType", "keepBlue", "keepOld"},
    # A rolling update moves slots, it keeps no old version around: no keepOld.
    "rolling": _COMMON | {"batchSize", "batchDuration", "increments", "rollbackOnFailure"},
    "ab": _COMMON | {"versionA", "versionB", "trafficSplit", "testDuration", "keepOld"},
}
"""Per strategy, the keys ``parse_config`` reads for it."""
_ONE_OF = (
    ("stepDuration", "canaryDuration", "linearInterval", "testDuration", "batchDuration"),
    ("keepOld", "keepBlue"),
    ("increments", "linearPercentage", "batchSize"),
)
"""Keys that say the same thing: a request gives at most one of each group."""
THRESHOLD_KEYS = ("errorRate", "latencyP99Ms", "successRate")
DEFAULT_INTERVAL_S = 600.0
DEFAULT_MIN_SAMPLES = 20
DEFAULT_RETIRE_S = 5.0
"""How long the replaced version keeps its slots after it lost its traffic (callers' route tables
may lag by a moment), unless ``keepBlue`` says longer."""


class RolloutSettingError(InvalidCatalogRequest):
    """A rollout setting that is unknown, malformed or contradicts another; ``field`` is its key
    (``rollbackThresholds.errorRate`` for a nested one)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Thresholds:
    """A step fails when the new version's error rate or p99 is above, or its success rate below."""

    error_rate: float | None = 0.05
    latency_p99_ms: float | None = 1000.0
    success_rate: float | None = 0.95
    min_samples: int = DEFAULT_MIN_SAMPLES

    def to_json(self) -> dict[str, Any]:
        return {
            "errorRate": self.error_rate,
            "latencyP99Ms": self.latency_p99_ms,
            "successRate": self.success_rate,
        }


@dataclass(frozen=True)
class RolloutConfig:
    strategy: str
    steps: tuple[int, ...]
    """Per step, the percentage of traffic (rolling: of replica slots) on the new version."""
    interval_s: float
    """How long each step is observed before the next one."""
    thresholds: Thresholds = field(default_factory=Thresholds)
    retire_after_s: float = DEFAULT_RETIRE_S
    manual_promotion: bool = False
    force: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "increments": list(self.steps),
            "stepDuration": format_duration(self.interval_s),
            "rollbackThresholds": self.thresholds.to_json(),
            "minSamples": self.thresholds.min_samples,
            "keepOld": format_duration(self.retire_after_s),
            "manualPromotion": self.manual_promotion,
            "force": self.force,
        }

    @property
    def final_step(self) -> int:
        return len(self.steps) - 1


def strategy_name(value: str) -> str:
    name = _ALIASES.get(value.strip().lower().replace(" ", ""))
    if name is None:
        raise RolloutSettingError(
            "strategy", f"unknown strategy {value!r}; use one of {', '.join(STRATEGIES)}"
        )
    return name


def _percent(value: Any, what: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise RolloutSettingError(key, f"{what} must be a percentage from 0 to 100, not {value!r}")
    return round(value)


def _steps(values: Any, key: str = "increments") -> tuple[int, ...]:
    if not isinstance(values, list | tuple) or not values:
        raise RolloutSettingError(key, "increments must be a non-empty list of percentages")
    steps = tuple(_percent(v, "an increment", key) for v in values)
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise RolloutSettingError(key, f"increments must rise: {list(steps)}")
    if steps[-1] != 100:
        steps = (*steps, 100)
    return steps


def _rate(value: Any, what: str, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise RolloutSettingError(key, f"{what} must be a fraction from 0 to 1, not {value!r}")
    return float(value)


def _threshold_key(given: dict[str, Any], name: str, flat: str | None = None) -> str:
    """Where a threshold was given: ``rollbackThresholds.{name}``, else the seed's flat key."""
    return f"rollbackThresholds.{name}" if name in given or flat is None else flat


def _thresholds(raw: dict[str, Any]) -> Thresholds:
    given = raw.get("rollbackThresholds") or {}
    if not isinstance(given, dict):
        raise RolloutSettingError("rollbackThresholds", "rollbackThresholds must be an object")
    base = Thresholds()
    error_rate = given.get("errorRate", raw.get("rollbackOnErrorRate", base.error_rate))
    p99 = given.get("latencyP99Ms", raw.get("rollbackOnLatencyP99", base.latency_p99_ms))
    if p99 is not None and (isinstance(p99, bool) or not isinstance(p99, int | float) or p99 <= 0):
        raise RolloutSettingError(
            _threshold_key(given, "latencyP99Ms", "rollbackOnLatencyP99"),
            f"latencyP99Ms must be a positive number, not {p99!r}",
        )
    min_samples = raw.get("minSamples", base.min_samples)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise RolloutSettingError("minSamples", f"minSamples must be a positive integer, not {min_samples!r}")
    return Thresholds(
        error_rate=_rate(error_rate, "errorRate", _threshold_key(given, "errorRate", "rollbackOnErrorRate")),
        latency_p99_ms=None if p99 is None else float(p99),
        success_rate=_rate(
            given.get("successRate", base.success_rate), "successRate", "rollbackThresholds.successRate"
        ),
        min_samples=min_samples,
    )


def _duration(raw: dict[str, Any], *keys: str, default: float) -> float:
    for key in keys:
        if raw.get(key) is not None:
            if not isinstance(raw[key], str | int | float):
                raise RolloutSettingError(key, f"{key} must be a duration such as PT30S, not {raw[key]!r}")
            try:
                return parse_duration(raw[key])
            except InvalidCatalogRequest as exc:
                raise RolloutSettingError(key, f"{key}: {exc}") from None
    return default


def check_settings(raw: dict[str, Any]) -> str:
    """The strategy of ``raw`` once every key is one its strategy reads, given once, with a value of
    the seed's type (ranges are ``parse_config``'s to check); else ``RolloutSettingError``."""
    strategy = strategy_name(raw["strategy"]) if isinstance(raw.get("strategy"), str) else None
    if strategy is None:
        raise RolloutSettingError("strategy", f"strategy must be a string, not {raw.get('strategy')!r}")
    allowed = SETTINGS[strategy]
    for key in raw:
        if key not in allowed:
            raise RolloutSettingError(
                key, f"{key!r} is not a {strategy} setting; use {', '.join(sorted(allowed - {'strategy'}))}"
            )
    for group in _ONE_OF:
        given = [key for key in group if key in raw]
        if len(given) > 1:
            raise RolloutSettingError(given[1], f"give one of {' and '.join(given)}, not both")
    for key in ("manualPromotion", "force"):
        if key in raw and not isinstance(raw[key], bool):
            raise RolloutSettingError(key, f"{key} must be true or false, not {raw[key]!r}")
    if "rollbackOnFailure" in raw and raw["rollbackOnFailure"] is not True:
        # A failing batch always moves every slot back; there is no "stop and stay" mode to select.
        raise RolloutSettingError(
            "rollbackOnFailure", "rollbackOnFailure can only be true: a failing batch is always rolled back"
        )
    if "switchType" in raw and raw["switchType"] != "Instant":
        raise RolloutSettingError(
            "switchType", f'switchType can only be "Instant" (one weight change), not {raw["switchType"]!r}'
        )
    thresholds = raw.get("rollbackThresholds")
    if isinstance(thresholds, dict):
        for key in thresholds:
            if key not in THRESHOLD_KEYS:
                raise RolloutSettingError(
                    f"rollbackThresholds.{key}",
                    f"{key!r} is not a rollback threshold; use {', '.join(THRESHOLD_KEYS)}",
                )
        for name, flat in (("errorRate", "rollbackOnErrorRate"), ("latencyP99Ms", "rollbackOnLatencyP99")):
            if name in thresholds and flat in raw:
                raise RolloutSettingError(flat, f"give one of rollbackThresholds.{name} and {flat}, not both")
    if "canaryPercentage" in raw and isinstance(raw.get("increments"), list) and raw["increments"]:
        if raw["increments"][0] != raw["canaryPercentage"]:
            raise RolloutSettingError(
                "canaryPercentage",
                f"canaryPercentage {raw['canaryPercentage']!r} is not the first of increments"
                f" {raw['increments']!r}",
            )
    for key in ("versionA", "versionB"):
        if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], str | int)):
            raise RolloutSettingError(key, f'{key} must be a version such as "v2", not {raw[key]!r}')
    return strategy


def parse_config(raw: dict[str, Any], *, from_version: int, to_version: int) -> RolloutConfig:
    """Validate the seed-style configuration of a rollout from ``from_version`` to ``to_version``."""
    strategy = strategy_name(str(raw.get("strategy", "canary")))
    thresholds = _thresholds(raw)
    manual = bool(raw.get("manualPromotion", strategy == "ab"))
    retire = _duration(raw, "keepOld", "keepBlue", default=DEFAULT_RETIRE_S)
    if strategy == "canary":
        if raw.get("increments") is not None:
            steps = _steps(raw["increments"])
        elif raw.get("canaryPercentage") is not None:
            steps = _steps([raw["canaryPercentage"], 100], "canaryPercentage")
        else:
            steps = (10, 50, 100)
        interval = _duration(raw, "stepDuration", "canaryDuration", default=DEFAULT_INTERVAL_S)
    elif strategy == "linear":
        if raw.get("increments") is not None:
            steps = _steps(raw["increments"])
        else:
            size = _percent(raw.get("linearPercentage", 10), "linearPercentage", "linearPercentage")
            if size == 0:
                raise RolloutSettingError("linearPercentage", "linearPercentage must be above 0")
            steps = _steps([*list(range(size, 100, size)), 100])
        interval = _duration(
            raw, "stepDuration", "linearInterval", "canaryDuration", default=DEFAULT_INTERVAL_S
        )
    elif strategy == "blue-green":
        steps = (0, 100)
        interval = _duration(raw, "stepDuration", "testDuration", default=300.0)
    elif strategy == "rolling":
        if raw.get("increments") is not None:
            steps = _steps(raw["increments"])
        else:
            size = _percent(raw.get("batchSize", 25), "batchSize", "batchSize")
            if size == 0:
                raise RolloutSettingError("batchSize", "batchSize must be above 0")
            batches = math.ceil(100 / size)
            steps = tuple(min(100, size * k) for k in range(1, batches + 1))
        interval = _duration(raw, "stepDuration", "batchDuration", default=300.0)
    else:  # ab
        for key, version, role in (("versionA", from_version, "live"), ("versionB", to_version, "new")):
            if key in raw and str(raw[key]).lstrip("v") != str(version):
                raise RolloutSettingError(
                    key, f"{key} must be v{version} (the {role} version), not {raw[key]!r}"
                )
        split = raw.get("trafficSplit") or {f"v{from_version}": 50, f"v{to_version}": 50}
        if not isinstance(split, dict):
            raise RolloutSettingError("trafficSplit", "trafficSplit must map versions to percentages")
        weights = {
            str(k).lstrip("v"): _percent(v, "a traffic split", f"trafficSplit.{k}") for k, v in split.items()
        }
        if set(weights) - {str(from_version), str(to_version)}:
            raise RolloutSettingError(
                "trafficSplit", f"trafficSplit may name only v{from_version} and v{to_version}"
            )
        if len(weights) == 2 and sum(weights.values()) != 100:
            raise RolloutSettingError("trafficSplit", f"trafficSplit must add up to 100, not {split}")
        new = weights.get(str(to_version), 100 - weights.get(str(from_version), 50))
        steps = (new, 100) if new < 100 else (100,)
        interval = _duration(raw, "stepDuration", "testDuration", default=3600.0)
    return RolloutConfig(
        strategy=strategy,
        steps=steps,
        interval_s=interval,
        thresholds=thresholds,
        retire_after_s=retire,
        manual_promotion=manual,
        force=bool(raw.get("force", False)),
    )


def config_from_json(stored: dict[str, Any]) -> RolloutConfig:
    """The configuration as ``to_json`` stored it."""
    th = stored.get("rollbackThresholds") or {}
    return RolloutConfig(
        strategy=str(stored["strategy"]),
        steps=tuple(int(s) for s in stored["increments"]),
        interval_s=parse_duration(stored["stepDuration"]),
        thresholds=Thresholds(
            error_rate=th.get("errorRate"),
            latency_p99_ms=th.get("latencyP99Ms"),
            success_rate=th.get("successRate"),
            min_samples=int(stored.get("minSamples", DEFAULT_MIN_SAMPLES)),
        ),
        retire_after_s=parse_duration(stored.get("keepOld", DEFAULT_RETIRE_S)),
        manual_promotion=bool(stored.get("manualPromotion", False)),
        force=bool(stored.get("force", False)),
    )
