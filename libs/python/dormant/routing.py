"""The route table an SDK client keeps: ``mesh/routes/{svc}`` (retained) = alias -> {version: weight}.

A client subscribes to a service's routes the first time it calls it without a version, then picks a
version per call: by weight at random, or, given a routing key (a user id, say), by a stable hash of
the key, so the same key reaches the same version for as long as the weights stay the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import Mapping

import orjson

ROUTES_PREFIX = "mesh/routes/"
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
        return ROUTES_PREFIX + service

    def feed(self, topic: str, payload: bytes) -> bool:
        """Take a route-table message; False if ``topic`` is not one."""
        if not topic.startswith(ROUTES_PREFIX):
            return False
        service = topic[len(ROUTES_PREFIX) :]
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
