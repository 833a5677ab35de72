"""Judging a version's numbers against a rollout's thresholds (pure logic).

``VersionStats`` sums the one-second windows runtimes publish on ``mesh/stats/{svc}/v{N}/{podId}``:
calls, answers by error type and a latency histogram (``le`` bounds in ms plus an overflow bucket).
Errors a caller caused (bad input, no rights, unknown function) are not held against a version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from .config import Thresholds

CALLER_ERRORS = frozenset({"ValidationError", "Unauthenticated", "Forbidden", "NotFound", "Throttled"})
"""Answers that say nothing about the version's health: the caller's mistakes, and calls refused at
the function's concurrency limit before they ran."""


@dataclass
class VersionStats:
    calls: int = 0
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency: dict[float, int] = field(default_factory=dict)
    """Calls per histogram bucket, keyed by the bucket's upper bound in ms (``inf`` = overflow)."""

    def add_window(self, window: dict[str, Any]) -> None:
        """Add one published window (ignores anything malformed)."""
        self.calls += int(window.get("calls", 0))
        self.ok += int(window.get("ok", 0))
        for kind, count in (window.get("errors") or {}).items():
            self.errors[str(kind)] = self.errors.get(str(kind), 0) + int(count)
        latency = window.get("latency") or {}
        bounds = [float(b) for b in latency.get("le", [])] + [float("inf")]
        for bound, count in zip(bounds, latency.get("counts", []), strict=False):
            if count:
                self.latency[bound] = self.latency.get(bound, 0) + int(count)

    def merge(self, other: VersionStats) -> None:
        self.calls += other.calls
        self.ok += other.ok
        for kind, count in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + count
        for bound, count in other.latency.items():
            self.latency[bound] = self.latency.get(bound, 0) + count

    @property
    def judged(self) -> int:
        """Calls that count: all but those failed by their caller."""
        return self.calls - sum(n for kind, n in self.errors.items() if kind in CALLER_ERRORS)

    @property
    def failed(self) -> int:
        return sum(n for kind, n in self.errors.items() if kind not in CALLER_ERRORS)

    @property
    def error_rate(self) -> float:
        return self.failed / self.judged if self.judged else 0.0

    @property
    def success_rate(self) -> float:
        return self.ok / self.judged if self.judged else 1.0

    def percentile_ms(self, fraction: float) -> float:
        """The upper bound of the bucket holding the ``fraction`` quantile (0 when there are no calls)."""
        total = sum(self.latency.values())
        if total == 0:
            return 0.0
        rank = fraction * total
        seen = 0
        for bound in sorted(self.latency):
            seen += self.latency[bound]
            if seen >= rank:
                return bound
        return max(self.latency)

    def numbers(self) -> dict[str, Any]:
        p99 = self.percentile_ms(0.99)
        return {
            "calls": self.judged,
            "errors": self.failed,
            "errorsByType": dict(self.errors),
            "errorRate": round(self.error_rate, 4),
            "successRate": round(self.success_rate, 4),
            "latencyP99Ms": p99 if p99 != float("inf") else "inf",
        }


@dataclass(frozen=True)
class Verdict:
    kind: Literal["pass", "fail", "wait"]
    reason: str
    numbers: dict[str, Any]


def judge(stats: VersionStats, thresholds: Thresholds) -> Verdict:
    """``fail`` on a breach, ``wait`` below the minimum sample size, else ``pass``."""
    numbers = stats.numbers()
    if stats.judged < thresholds.min_samples:
        return Verdict("wait", f"{stats.judged} of {thresholds.min_samples} calls needed to judge", numbers)
    breaches = []
    if thresholds.error_rate is not None and stats.error_rate > thresholds.error_rate:
        breaches.append(f"error rate {stats.error_rate:.3f} > {thresholds.error_rate:g}")
    if thresholds.success_rate is not None and stats.success_rate < thresholds.success_rate:
        breaches.append(f"success rate {stats.success_rate:.3f} < {thresholds.success_rate:g}")
    p99 = stats.percentile_ms(0.99)
    if thresholds.latency_p99_ms is not None and p99 > thresholds.latency_p99_ms:
        breaches.append(f"p99 latency {p99:g} ms > {thresholds.latency_p99_ms:g} ms")
    if breaches:
        return Verdict("fail", "; ".join(breaches), numbers)
    return Verdict("pass", f"healthy over {stats.judged} calls", numbers)
