"""Typed rows of the gateway tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

INVOCATION_STATUSES = ("queued", "running", "succeeded", "dead")
TRIGGER_KINDS = ("http", "cron", "queue")


@dataclass(frozen=True, slots=True)
class FunctionRecord:
    """A function (a Dormant service) as the control plane configures it."""

    name: str
    runtime: str
    handler: str
    memory_mb: int
    timeout_s: int
    environment: dict[str, str]
    tags: dict[str, str]
    description: str
    concurrency: dict[str, Any]
    owner: str
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class TriggerRecord:
    """An HTTP, cron or queue trigger of a function; ``target`` is the function inside the service."""

    trigger_id: str
    function_name: str
    kind: str
    target: str
    config: dict[str, Any]
    enabled: bool
    created_by: str
    created_at: datetime
    updated_at: datetime
    last_error: str | None = None
    """Why the scheduler skips this trigger (set by the cron worker, cleared by enable/disable)."""
    last_error_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class TriggerMetrics:
    trigger_id: str
    fired: int
    succeeded: int
    failed: int
    retried: int
    dead_lettered: int
    last_fired_at: datetime | None


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """One persisted asynchronous invocation (from the API, a cron tick or another trigger)."""

    call_id: str
    app_name: str
    function: str
    version: int | None
    alias: str | None
    payload: Any
    status: str
    attempts: int
    max_attempts: int
    timeout_s: float
    next_attempt_at: datetime
    result: Any
    error: dict[str, Any] | None
    source: str
    trigger_id: str | None
    scheduled_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
