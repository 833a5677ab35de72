"""The rollout controller process (``dormant controller``): one active process (a Postgres advisory
lock) that publishes every alias change retained to ``mesh/routes/{svc}`` and each service's state to
``mesh/services/{svc}``, reads ``mesh/stats`` and drives rollouts from Postgres.

This package owns the controller's MQTT I/O; its state, SQL and rollout logic live in
``dormant_catalog.controller`` (the catalog does no MQTT I/O).
"""

from __future__ import annotations

from .process import Controller

__all__ = ["Controller"]
