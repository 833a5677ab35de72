"""Weighted routing: which version of a service a call goes to, from the alias table.

No alias and no version: the live topic (the pods of the ``live`` primary answer it) unless ``live`` is
split between versions, then a weighted pick. A named alias or ``$LATEST``: a weighted pick of that
alias, or the newest version. Aliases are cached for ``ttl_s`` seconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping

from dormant.errors import NotFound, ValidationError
from dormant_catalog import Catalog

LATEST = "$LATEST"
LIVE = "live"


def pick_version(weights: Mapping[int, int], rand: Callable[[], float] = random.random) -> int | None:
    """A version drawn with probability proportional to its weight; None if no weight is positive."""
    positive = sorted((v, w) for v, w in weights.items() if w > 0)
    total = sum(w for _, w in positive)
    if total <= 0:
        return None
    point = rand() * total
    for version, weight in positive:
        point -= weight
        if point < 0:
            return version
    return positive[-1][0]


class RouteTable:
    def __init__(self, catalog: Catalog, *, ttl_s: float = 1.0) -> None:
        self._catalog = catalog
        self._ttl_s = ttl_s
        self._cache: dict[tuple[str, str], tuple[float, dict[int, int] | None]] = {}

    async def _weights(self, service: str, alias: str) -> dict[int, int] | None:
        now = time.monotonic()
        hit = self._cache.get((service, alias))
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        record = await self._catalog.get_alias(service, alias)
        weights = dict(record.weights) if record is not None else None
        self._cache[(service, alias)] = (now, weights)
        return weights

    async def resolve(self, service: str, *, alias: str | None, version: int | None) -> int | None:
        """The version to call, or None for the live topic."""
        if version is not None:
            if alias is not None:
                raise ValidationError("give either an alias or a version, not both")
            return version
        if alias is None or alias == LIVE:
            weights = await self._weights(service, LIVE)
            if weights is None or sum(1 for w in weights.values() if w > 0) <= 1:
                return None
            return pick_version(weights)
        if alias == LATEST:
            latest = await self._catalog.latest_version(service)
            if latest is None:
                raise NotFound(f"no version of {service!r} is registered")
            return latest
        weights = await self._weights(service, alias)
        if weights is None:
            raise NotFound(f"{service!r} has no alias {alias!r}")
        picked = pick_version(weights)
        if picked is None:
            raise NotFound(f"alias {alias!r} of {service!r} routes to no version")
        return picked
