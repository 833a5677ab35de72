"""The caller behind a verified token."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .roles import Role


@dataclass(frozen=True, slots=True)
class Principal:
    sub: str
    roles: frozenset[Role]
    claims: dict[str, Any] = field(default_factory=dict, compare=False)
