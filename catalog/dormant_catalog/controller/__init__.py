"""The rollout controller: one active process (a Postgres advisory lock) that publishes every alias
change retained to ``mesh/routes/{svc}``, reads ``mesh/stats`` and drives rollouts from Postgres."""

from __future__ import annotations

from .process import Controller

__all__ = ["Controller"]
