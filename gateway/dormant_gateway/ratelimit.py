"""Token-bucket rate limits per key (per function for invoke, per user for deploy and management).

Each gateway replica keeps its own buckets in memory, so N replicas admit up to N times the rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from .http_errors import HttpError


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``check(kind, key)`` takes one token from the bucket, or raises a 429 ``HttpError``."""

    MAX_KEYS = 100_000

    def __init__(self, per_minute: dict[str, float], clock: Callable[[], float] = time.monotonic) -> None:
        self._rates = {kind: rate / 60.0 for kind, rate in per_minute.items()}
        self._capacity = {kind: max(1.0, rate) for kind, rate in per_minute.items()}
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def check(self, kind: str, key: str) -> None:
        rate = self._rates[kind]
        capacity = self._capacity[kind]
        now = self._clock()
        bucket = self._buckets.get((kind, key))
        if bucket is None:
            if len(self._buckets) >= self.MAX_KEYS:
                self._buckets.clear()
            bucket = self._buckets[(kind, key)] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return
        retry_after = max(1, math.ceil((1.0 - bucket.tokens) / rate)) if rate > 0 else 60
        raise HttpError(
            429,
            "TooManyRequests",
            f"rate limit for {kind} exceeded ({capacity:g} requests per minute)",
            {"limit": kind, "retryAfter": retry_after},
            headers={"Retry-After": str(retry_after)},
        )
