"""Rows of the ``rollouts`` table, as the controller, the CLI and the gateway read them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .config import RolloutConfig, config_from_json

ACTIVE_STATES = ("running", "waiting")


@dataclass
class RolloutRecord:
    rollout_id: int
    app_name: str
    from_version: int
    to_version: int
    strategy: str
    config: dict[str, Any]
    state: str
    """running | waiting (for ``promote``) | succeeded | rolled-back"""
    step: int
    step_started_at: datetime | None
    reason: str | None
    numbers: dict[str, Any]
    retire_version: int | None
    retire_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None

    @property
    def settings(self) -> RolloutConfig:
        return config_from_json(self.config)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def percent(self) -> int:
        """Traffic (rolling: slots) the current step gives the new version."""
        steps = self.settings.steps
        return steps[min(self.step, len(steps) - 1)]

    def to_json(self) -> dict[str, Any]:
        return {
            "rolloutId": self.rollout_id,
            "service": self.app_name,
            "fromVersion": self.from_version,
            "toVersion": self.to_version,
            "strategy": self.strategy,
            "state": self.state,
            "step": self.step,
            "percent": self.percent,
            "config": self.config,
            "reason": self.reason,
            "numbers": self.numbers,
            "createdBy": self.created_by,
            "createdAt": self.created_at.isoformat(),
            "finishedAt": self.finished_at.isoformat() if self.finished_at else None,
        }
