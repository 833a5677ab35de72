"""Durations as users write them: ISO 8601 (``PT10M``, ``PT1H30M``, ``P1D``, ``PT2.5S``), shorthand
(``30s``, ``500ms``, ``2m``, ``1h``) or a plain number of seconds."""

from __future__ import annotations

import re

from ..errors import InvalidCatalogRequest

_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_SHORT = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: str | float | int) -> float:
    """Seconds (never negative); ``InvalidCatalogRequest`` for anything else."""
    if isinstance(value, bool):
        raise InvalidCatalogRequest(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise InvalidCatalogRequest(f"a duration cannot be negative: {value!r}")
        return float(value)
    text = value.strip()
    iso = _ISO.match(text.upper())
    if iso and text.upper() not in ("P", "PT") and not text.upper().endswith("T"):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v is not None}
        return (
            parts.get("d", 0.0) * 86400
            + parts.get("h", 0.0) * 3600
            + parts.get("m", 0.0) * 60
            + parts.get("s", 0.0)
        )
    short = _SHORT.match(text.lower())
    if short:
        return float(short["n"]) * _UNIT_S[short["unit"] or "s"]
    raise InvalidCatalogRequest(f"not a duration: {value!r} (use ISO 8601 such as PT30S, or 30s, 2m, 1h)")


def format_duration(seconds: float) -> str:
    """ISO 8601, as stored in a rollout's configuration."""
    if seconds == int(seconds):
        return f"PT{int(seconds)}S"
    return f"PT{seconds:g}S"
