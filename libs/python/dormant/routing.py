"""What an SDK client knows of the mesh, from retained messages: route tables and service states.

``mesh/routes/{svc}`` = alias -> {version: weight}. A client subscribes to a service's routes the
first time it calls it without a version, then picks a version per call: by weight at random, or,
given a routing key (a user id, say), by a stable hash of the key, so the same key reaches the same
version for as long as the weights stay the same.

``mesh/services/{svc}`` = the service's versions, their functions and serving state (published by the
controller). A client reads it only when a call reached nobody (PUBACK 0x10), to say whether the
service, version or function does not exist (``NotFound``) or why nothing serves it (``Unavailable``).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from . import wire
from .errors import DormantError, NotFound, Unavailable

LIVE_ALIAS = "live"

Weights = dict[int, int]


def parse_routes(payload: bytes) -> dict[str, Weights] | None:
    """The aliases of one route table; None for an empty (deleted) or malformed one."""
    if not payload:
        return None
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    table: dict[str, Weights] = {}
    for alias, weights in data.items():
        if not isinstance(weights, dict):
            continue
        parsed = {}
        for version, weight in weights.items():
            if str(version).isdigit() and isinstance(weight, int | float) and weight > 0:
                parsed[int(version)] = int(weight)
        if parsed:
            table[str(alias)] = parsed
    return table


def key_point(routing_key: str) -> float:
    """Where ``routing_key`` falls in [0, 1): the same for every client and process."""
    digest = hashlib.sha256(routing_key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(weights: Mapping[int, int], routing_key: str | None = None, rng: random.Random | None = None) -> int:
    """A version drawn by weight; a routing key always gets the same one for the same weights."""
    versions = sorted(v for v, w in weights.items() if w > 0)
    if not versions:
        raise ValueError("no version has weight")
    total = sum(weights[v] for v in versions)
    point = key_point(routing_key) if routing_key is not None else (rng or random).random()
    target = point * total
    running = 0
    for version in versions:
        running += weights[version]
        if target < running:
            return version
    return versions[-1]


class RouteTable:
    """Route tables by service, fed with the messages of ``mesh/routes/+``."""

    def __init__(self) -> None:
        self._tables: dict[str, dict[str, Weights]] = {}
        self.watched: dict[str, asyncio.Event] = {}
        """Services whose routes this client subscribed to; each event is set once the table is in."""

    @staticmethod
    def filter_for(service: str) -> str:
        return wire.routes_topic(service)

    def feed(self, topic: str, payload: bytes) -> bool:
        """Take a route-table message; False if ``topic`` is not one."""
        service = wire.parse_routes_topic(topic)
        if service is None:
            return False
        table = parse_routes(payload)
        if table is None:
            self._tables.pop(service, None)
        else:
            self._tables[service] = table
        return True

    def weights(self, service: str, alias: str = LIVE_ALIAS) -> Weights | None:
        table = self._tables.get(service)
        return None if table is None else table.get(alias)

    def choose(self, service: str, routing_key: str | None = None, alias: str = LIVE_ALIAS) -> int | None:
        """The version to call, or None when no table is known (call ``service/{svc}/{fn}`` then)."""
        weights = self.weights(service, alias)
        return None if not weights else pick(weights, routing_key)


# ---------------------------------------------------------------------------------------------- states

STATES_MARKER = wire.service_state_topic()


@dataclass(frozen=True, slots=True)
class VersionState:
    state: str
    """serving, starting, failed, not-deployed or stopped."""
    reason: str
    functions: frozenset[str] | None
    """The version's functions; None when the catalog does not list them."""


@dataclass(frozen=True, slots=True)
class ServiceState:
    """What ``mesh/services/{svc}`` says (published by the controller from the catalog)."""

    latest: int | None
    live: int | None
    state: str
    """What an unversioned call reaches: the state of the ``live`` alias's primary version."""
    reason: str
    versions: dict[int, VersionState]


def _text(value: object, default: str) -> str:
    return value if isinstance(value, str) and value else default


def parse_service_state(data: bytes | Mapping[str, Any]) -> ServiceState | None:
    """A service state from its retained payload (or the same JSON as a mapping); None when empty or
    malformed (then nothing is claimed about the service)."""
    if isinstance(data, bytes):
        if not data:
            return None
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
    if not isinstance(data, Mapping) or not isinstance(data.get("versions"), Mapping):
        return None
    lists = data.get("functions")
    lists = lists if isinstance(lists, list) else []
    versions: dict[int, VersionState] = {}
    for key, entry in data["versions"].items():
        if not str(key).isdigit() or not isinstance(entry, Mapping):
            continue
        index = entry.get("functions")
        names = lists[index] if isinstance(index, int) and 0 <= index < len(lists) else None
        functions = frozenset(str(n) for n in names) if isinstance(names, list) else None
        versions[int(key)] = VersionState(
            _text(entry.get("state"), "unknown"), _text(entry.get("reason"), "no reason given"), functions
        )

    def version(value: object) -> int | None:
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return ServiceState(
        version(data.get("latest")),
        version(data.get("live")),
        _text(data.get("state"), "unknown"),
        _text(data.get("reason"), "no reason given"),
        versions,
    )


def explain_unserved(
    service: str,
    function: str,
    version: int | None,
    state: ServiceState | None,
    *,
    published: bool,
    topic: str,
) -> DormantError:
    """The error for a call the broker delivered to nobody (PUBACK 0x10), from the service's state.

    ``NotFound`` for a service, version or function that does not exist; otherwise ``Unavailable``
    saying why nothing serves it. ``published`` says whether the mesh publishes service states at all
    (without them, a missing state proves nothing). ``details["noSubscribers"]`` is True on both, so
    callers can tell them from errors a runtime answered.
    """
    where = f"{service}.{function}" if version is None else f"{service} v{version}.{function}"
    details: dict[str, Any] = {
        "service": service,
        "function": function,
        "version": version,
        "topic": topic,
        "noSubscribers": True,
    }
    if state is None:
        if published:
            return NotFound(f"no service named {service!r}", details)
        return Unavailable(
            f"nothing is serving {where} (no state is published for {service!r}: is the controller running?)",
            details,
        )
    if version is not None and version not in state.versions:
        return NotFound(f"{service!r} has no version {version}", details)
    target = version
    if target is None:
        target = state.live if state.live in state.versions else state.latest
    entry = state.versions.get(target) if target is not None else None
    if entry is not None and entry.functions is not None and function not in entry.functions:
        return NotFound(f"{service} v{target} has no function {function!r}", {**details, "checked": target})
    kind, reason = (
        (entry.state, entry.reason) if version is not None and entry else (state.state, state.reason)
    )
    if kind == "serving":
        reason += f", but nothing answered on {topic} (it may be switching versions: retry)"
    return Unavailable(f"{where} is unavailable: {reason}", {**details, "state": kind})


class ServiceStates:
    """Service states by name, fed with the messages of ``mesh/services/{svc}`` and ``mesh/services``."""

    def __init__(self) -> None:
        self._states: dict[str, ServiceState] = {}
        self.published = False
        """True once the marker says this mesh publishes service states."""
        self.watched: dict[str, asyncio.Event] = {}
        """Services whose state this client subscribed to; each event is set once it is in."""

    @staticmethod
    def filters_for(service: str) -> list[str]:
        return [wire.service_state_topic(service), STATES_MARKER]

    def feed(self, topic: str, payload: bytes) -> bool:
        """Take a service-state message; False if ``topic`` is not one."""
        if topic == STATES_MARKER:
            self.published = bool(payload)
            return True
        service = wire.parse_service_state_topic(topic)
        if service is None:
            return False
        state = parse_service_state(payload)
        if state is None:
            self._states.pop(service, None)
        else:
            self._states[service] = state
        return True

    def get(self, service: str) -> ServiceState | None:
        return self._states.get(service)
