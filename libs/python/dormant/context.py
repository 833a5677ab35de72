"""``Context`` and ``UserContext``: what a handler knows about the call it is serving."""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class UserContext:
    """The caller's identity. Anonymous until authentication is configured."""

    user_id: str | None = None
    email: str | None = None
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def anonymous(self) -> bool:
        return self.user_id is None

    def has_role(self, role: str) -> bool:
        return role in self.roles


ANONYMOUS = UserContext()


class _CallLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every record with the callId and adds it as ``record.call_id``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra.get('call_id')}] {msg}", kwargs


@dataclass(slots=True)
class Context:
    """Per-call facts handed to every handler next to its input model."""

    call_id: str
    service: str
    function: str
    version: int | None = None
    deadline: float | None = None
    """Absolute deadline, seconds since the epoch, or None when the caller set none."""
    user: UserContext = ANONYMOUS
    headers: dict[str, str] = field(default_factory=dict)
    _logger: logging.LoggerAdapter[logging.Logger] | None = None

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.time())

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry this call's callId."""
        if self._logger is None:
            base = logging.getLogger(f"dormant.fn.{self.service}.{self.function}")
            self._logger = _CallLogger(base, {"call_id": self.call_id})
        return self._logger
