"""Matching request paths against HTTP trigger patterns such as ``/orders/{id}`` or ``/api/{proxy+}``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PathPattern:
    pattern: str
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, pattern: str) -> PathPattern:
        return cls(pattern, tuple(s for s in pattern.strip("/").split("/") if s))

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Sort key: more literal segments first, then more segments, a ``{proxy+}`` last."""
        literal = sum(1 for s in self.segments if not s.startswith("{"))
        proxy = 1 if self.segments and self.segments[-1] == "{proxy+}" else 0
        return (-literal, proxy, -len(self.segments))

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` matches, else None."""
        parts = [p for p in path.strip("/").split("/") if p]
        params: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment == "{proxy+}":
                rest = parts[index:]
                if not rest:
                    return None
                params["proxy"] = "/".join(rest)
                return params
            if index >= len(parts):
                return None
            if segment.startswith("{"):
                params[segment[1:-1]] = parts[index]
            elif segment != parts[index]:
                return None
        return params if len(parts) == len(self.segments) else None


def best_match(patterns: Sequence[PathPattern], path: str) -> tuple[PathPattern, dict[str, str]] | None:
    for pattern in sorted(patterns, key=lambda p: p.specificity):
        params = pattern.match(path)
        if params is not None:
            return pattern, params
    return None
