"""The rollout controller's state and logic, without MQTT I/O: the rollout ``Engine``, the
``Autoscaler`` (replica counts from load, schedules and wake requests), the leader lock
(one active controller, a Postgres advisory lock), route tables read from the aliases, and the
``StatsBook`` of per-second windows. The process that connects them to the broker is
``dormant_controller``."""

from __future__ import annotations

from ..aliases import LATEST_ALIAS
from .autoscale import Autoscaler
from .engine import Engine
from .lock import LeaderLock
from .routes import route_table, route_tables
from .stats import StatsBook

__all__ = ["LATEST_ALIAS", "Autoscaler", "Engine", "LeaderLock", "StatsBook", "route_table", "route_tables"]
