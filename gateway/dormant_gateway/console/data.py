"""The console's JSON: what its page polls every second, behind the gateway's tokens and roles.

- ``GET /console/api/overview``: every service (versions, what is deployed, replicas serving, aliases
  and their weights, its newest rollout), the pod pool (each pod, what it serves, claimed and free
  counts) and the state of the live feed.
- ``GET /console/api/services/{name}``: one service in full: its versions, aliases, replica slots, the
  deployment's state, its newest rollout with its steps, the controller's word on it (``progress``), its
  events and the reason it ended, the ``live`` alias' weights over time (the audit log), and per version
  the live figures of the last minute (``live.LiveStats``).

Both need a token with a role that may read (``Action.READ``: viewer, developer, operator, admin): 401
without a valid one, 403 without such a role; browsers are told not to keep the answers (``no-store``).
Everything comes from the catalog's own reads (this module holds no SQL); an answer is made at most
every ``FRESH_S`` seconds per process and shared by everyone watching, so the catalog's load does not
grow with the number of open consoles.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response

from dormant_catalog import aliases as alias_sql
from dormant_catalog import audit as audit_sql
from dormant_catalog import deployments as deployment_sql
from dormant_catalog import listing
from dormant_catalog import status as status_sql
from dormant_catalog.records import AuditRecord, DeploymentRecord
from dormant_catalog.rollouts import store as rollout_store
from dormant_catalog.rollouts.records import RolloutRecord

from ..api.common import authorize, json_response, service_name, state
from ..api.views import deployment_view
from ..auth import Action
from .live import LiveStats, StatsFeed

NO_STORE = {"Cache-Control": "no-store"}
AUDIT_ROWS = 300
"""The newest audit rows of a service read for its weights over time and its rollout's events."""
WEIGHT_CHANGES = 40
"""At most this many changes of the ``live`` weights are shown (the newest)."""
ROLLOUTS = 5
ROLLOUT_EVENTS = ("rollout-start", "rollout-step", "promote", "rollback", "rollout-succeeded", "retire")
FRESH_S = 0.5
"""How long one process serves an answer it made again (the page polls every second)."""


@dataclass
class ConsoleState:
    """One gateway process's console: the live figures its feed fills, and the answers made lately."""

    stats: LiveStats
    feed: StatsFeed
    _answers: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    async def answer(self, key: str, make: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """The answer for ``key`` made within ``FRESH_S``, else a new one from ``make``."""
        now = time.monotonic()
        made = self._answers.get(key)
        if made is not None and now - made[0] < FRESH_S:
            return made[1]
        value = await make()
        # Only answers made lately are kept (a key per service asked for: no unbounded growth).
        self._answers = {k: v for k, v in self._answers.items() if now - v[0] < FRESH_S}
        self._answers[key] = (now, value)
        return value


def console_state(request: Request) -> ConsoleState:
    """This process's ``ConsoleState``, made, and its feed started, on the console's first request."""
    console: ConsoleState | None = getattr(request.app.state, "console", None)
    if console is None:
        stats = LiveStats()
        console = ConsoleState(stats, StatsFeed(state(request).config.broker_url, stats))
        request.app.state.console = console
    console.feed.start()
    return console


async def stop(app: Starlette) -> None:
    """Close the live feed, if the console was used (the gateway's lifespan calls it at shutdown)."""
    console: ConsoleState | None = getattr(app.state, "console", None)
    if console is not None:
        await console.feed.stop()


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _weights(weights: dict[int, int]) -> dict[str, int]:
    return {str(version): weight for version, weight in sorted(weights.items())}


def _rollout_brief(record: RolloutRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {
        "rolloutId": record.rollout_id,
        "strategy": record.strategy,
        "fromVersion": record.from_version,
        "toVersion": record.to_version,
        "state": record.state,
        "step": record.step,
        "steps": list(record.settings.steps),
        "percent": record.percent,
        "reason": record.reason,
    }


async def overview(request: Request) -> Response:
    await authorize(request, Action.READ)
    console = console_state(request)
    return json_response(await console.answer("", lambda: _overview(request, console)), headers=NO_STORE)


async def _overview(request: Request, console: ConsoleState) -> dict[str, Any]:
    gateway = state(request)
    async with gateway.db.connection() as conn:
        services = await listing.services(conn)
        pool = await listing.pool(conn)
        newest = {s.name: await rollout_store.list_rollouts(conn, s.name, limit=1) for s in services}
    counts = {"serving": 0, "starting": 0, "free": 0, "silent": 0, "gone": 0}
    for pod in pool:
        counts[pod.state] = counts.get(pod.state, 0) + 1
    return {
        "at": time.time(),
        "services": [
            {
                "name": s.name,
                "latest": s.latest,
                "versions": s.versions,
                "deployed": s.deployed,
                "replicas": s.replicas,
                "slots": s.slots,
                "serving": s.serving,
                "aliases": {alias: _weights(w) for alias, w in s.aliases.items()},
                "rollout": _rollout_brief(newest[s.name][0] if newest[s.name] else None),
            }
            for s in services
        ],
        "pool": {
            "claimed": counts["serving"] + counts["starting"],
            "free": counts["free"],
            "counts": counts,
            "pods": [
                {
                    "pod": pod.pod_id,
                    "state": pod.state,
                    "service": pod.service,
                    "version": pod.version,
                    "slot": pod.slot_index,
                    "since": _time(pod.since),
                    "lastSeen": _time(pod.last_seen),
                }
                for pod in pool
                if pod.state != "gone"
            ],
        },
        "live": console.feed.to_json(),
    }


def _rollout_view(
    record: RolloutRecord, deployment: DeploymentRecord | None, audit: list[AuditRecord]
) -> dict[str, Any]:
    events = [
        {"at": _time(row.at), "action": row.action, "actor": row.actor, "detail": row.detail}
        for row in audit
        if row.action in ROLLOUT_EVENTS and row.detail.get("rolloutId") == record.rollout_id
    ]
    return {
        **record.to_json(),
        "steps": list(record.settings.steps),
        "stepStartedAt": _time(record.step_started_at),
        "progress": deployment.status_reason if deployment is not None and record.active else None,
        "events": events,
    }


def _weight_history(audit: list[AuditRecord]) -> list[dict[str, Any]]:
    """The changes of the ``live`` alias, oldest first (the newest ``WEIGHT_CHANGES``)."""
    changes: list[dict[str, Any]] = []
    for row in audit:
        if row.action == "set-alias" and row.detail.get("alias") == alias_sql.LIVE_ALIAS:
            weights = row.detail.get("weights")
            why = row.detail.get("why")
        elif row.action == "clear-aliases":
            weights, why = {}, "undeployed"
        else:
            continue
        changes.append(
            {
                "at": _time(row.at),
                "weights": weights if isinstance(weights, dict) else {},
                "actor": row.actor,
                "why": why if isinstance(why, str) else None,
            }
        )
    return changes[-WEIGHT_CHANGES:]


async def service(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    console = console_state(request)
    answer = await console.answer(f"service/{name}", lambda: _service(request, console, name))
    return json_response(answer, headers=NO_STORE)


async def _service(request: Request, console: ConsoleState, name: str) -> dict[str, Any]:
    gateway = state(request)
    async with gateway.db.connection() as conn:
        versions = await listing.service_versions(conn, name)  # NotFoundInCatalog: 404
        aliases = await alias_sql.list_aliases(conn, name)
        deployment = await deployment_sql.get_deployment(conn, name)
        slots = await deployment_sql.list_slots(conn, name) if deployment is not None else []
        status = await status_sql.deployment_status(conn, name)
        rollouts = await rollout_store.list_rollouts(conn, name, limit=ROLLOUTS)
        audit = await audit_sql.list_audit(conn, name, limit=AUDIT_ROWS)
    live = console.stats.service(name)
    return {
        "at": time.time(),
        "name": name,
        "deployment": {
            **deployment_view(deployment, status),
            "status": deployment.status if deployment is not None else None,
            "statusReason": deployment.status_reason if deployment is not None else None,
        },
        "versions": [
            {
                "version": v.version,
                "status": v.status,
                "createdAt": _time(v.created_at),
                "createdBy": v.created_by,
                "weights": v.weights,
                "slots": v.slots,
                "serving": v.serving,
            }
            for v in versions
        ],
        "aliases": {alias: _weights(w) for alias, w in aliases.items()},
        "slots": [
            {
                "slot": slot.slot_index,
                "version": slot.version,
                "pod": slot.pod_id if slot.lease_live else None,
                "serving": slot.serving,
                "lastError": slot.last_error,
            }
            for slot in slots
        ],
        "rollout": _rollout_view(rollouts[0], deployment, audit) if rollouts else None,
        "rollouts": [_rollout_brief(r) for r in rollouts],
        "weightHistory": _weight_history(audit),
        "live": {
            **console.feed.to_json(),
            "versions": {str(version): figures for version, figures in live.items()},
        },
    }
