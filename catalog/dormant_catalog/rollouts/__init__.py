"""Rollouts: weighted aliases, strategies (canary, linear, blue-green, rolling, A/B), thresholds,
approvals, and the SQL that keeps a rollout's state so a restarted controller carries on."""

from __future__ import annotations

from .config import STRATEGIES, RolloutConfig, Thresholds, parse_config
from .durations import parse_duration
from .records import RolloutRecord
from .thresholds import Verdict, VersionStats, judge

__all__ = [
    "STRATEGIES",
    "RolloutConfig",
    "RolloutRecord",
    "Thresholds",
    "Verdict",
    "VersionStats",
    "judge",
    "parse_config",
    "parse_duration",
]
