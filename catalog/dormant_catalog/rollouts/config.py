"""A rollout's configuration, read from the seed's JSON form and stored back in it.

Keys (as in the seed): ``strategy`` (``Canary``, ``Linear``, ``BlueGreen``, ``Rolling``, ``ABTesting``,
or the CLI's lowercase names), ``canaryPercentage``, ``canaryDuration``, ``increments``,
``linearPercentage``, ``batchSize``, ``batchDuration``, ``testDuration``, ``keepBlue``,
``trafficSplit``, ``manualPromotion``, ``rollbackThresholds {errorRate, latencyP99Ms, successRate}``
(also ``rollbackOnErrorRate`` / ``rollbackOnLatencyP99``), ``minSamples``, ``force``.
Durations are ISO 8601 (``PT10M``) or shorthand (``30s``).
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
DEFAULT_INTERVAL_S = 600.0
DEFAULT_MIN_SAMPLES = 20
DEFAULT_RETIRE_S = 5.0
"""How long the replaced version keeps its slots after it lost its traffic (callers' route tables
may lag by a moment), unless ``keepBlue`` says longer."""


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
        raise InvalidCatalogRequest(f"unknown strategy {value!r}; use one of {', '.join(STRATEGIES)}")
    return name


def _percent(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
        raise InvalidCatalogRequest(f"{what} must be a percentage from 0 to 100, not {value!r}")
    return round(value)


def _steps(values: Any) -> tuple[int, ...]:
    if not isinstance(values, list | tuple) or not values:
        raise InvalidCatalogRequest("increments must be a non-empty list of percentages")
    steps = tuple(_percent(v, "an increment") for v in values)
    if any(b <= a for a, b in itertools.pairwise(steps)):
        raise InvalidCatalogRequest(f"increments must rise: {list(steps)}")
    if steps[-1] != 100:
        steps = (*steps, 100)
    return steps


def _rate(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InvalidCatalogRequest(f"{what} must be a fraction from 0 to 1, not {value!r}")
    return float(value)


def _thresholds(raw: dict[str, Any]) -> Thresholds:
    given = raw.get("rollbackThresholds") or {}
    if not isinstance(given, dict):
        raise InvalidCatalogRequest("rollbackThresholds must be an object")
    base = Thresholds()
    error_rate = given.get("errorRate", raw.get("rollbackOnErrorRate", base.error_rate))
    p99 = given.get("latencyP99Ms", raw.get("rollbackOnLatencyP99", base.latency_p99_ms))
    if p99 is not None and (isinstance(p99, bool) or not isinstance(p99, int | float) or p99 <= 0):
        raise InvalidCatalogRequest(f"latencyP99Ms must be a positive number, not {p99!r}")
    min_samples = raw.get("minSamples", base.min_samples)
    if isinstance(min_samples, bool) or not isinstance(min_samples, int) or min_samples < 1:
        raise InvalidCatalogRequest(f"minSamples must be a positive integer, not {min_samples!r}")
    return Thresholds(
        error_rate=_rate(error_rate, "errorRate"),
        latency_p99_ms=None if p99 is None else float(p99),
        success_rate=_rate(given.get("successRate", base.success_rate), "successRate"),
        min_samples=min_samples,
    )


def _duration(raw: dict[str, Any], *keys: str, default: float) -> float:
    for key in keys:
        if raw.get(key) is not None:
            return parse_duration(raw[key])
    return default


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
            steps = _steps([raw["canaryPercentage"], 100])
        else:
            steps = (10, 50, 100)
        interval = _duration(raw, "stepDuration", "canaryDuration", default=DEFAULT_INTERVAL_S)
    elif strategy == "linear":
        if raw.get("increments") is not None:
            steps = _steps(raw["increments"])
        else:
            size = _percent(raw.get("linearPercentage", 10), "linearPercentage")
            if size == 0:
                raise InvalidCatalogRequest("linearPercentage must be above 0")
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
            size = _percent(raw.get("batchSize", 25), "batchSize")
            if size == 0:
                raise InvalidCatalogRequest("batchSize must be above 0")
            batches = math.ceil(100 / size)
            steps = tuple(min(100, size * k) for k in range(1, batches + 1))
        interval = _duration(raw, "stepDuration", "batchDuration", default=300.0)
    else:  # ab
        split = raw.get("trafficSplit") or {f"v{from_version}": 50, f"v{to_version}": 50}
        if not isinstance(split, dict):
            raise InvalidCatalogRequest("trafficSplit must map versions to percentages")
        weights = {str(k).lstrip("v"): _percent(v, "a traffic split") for k, v in split.items()}
        if set(weights) - {str(from_version), str(to_version)}:
            raise InvalidCatalogRequest(f"trafficSplit may name only v{from_version} and v{to_version}")
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
