"""Retry policy shared by async invocations and queue triggers."""

from __future__ import annotations

import random

from dormant.errors import DormantError

# Errors that a second attempt cannot fix: the input, the target or the identity is wrong.
PERMANENT = frozenset({"ValidationError", "NotFound", "Unauthenticated", "Forbidden"})


def retryable(error: DormantError) -> bool:
    return error.type not in PERMANENT


def backoff_s(failed_attempts: int, *, base_s: float, max_s: float, jitter: float = 0.1) -> float:
    """Delay before the next attempt after ``failed_attempts`` failures: base * 2**(n-1), capped, +-10 %."""
    delay = min(max_s, base_s * float(2 ** max(0, failed_attempts - 1)))
    return float(max(0.0, delay * (1 + random.uniform(-jitter, jitter))))
