"""Typed call errors: the closed set of error types that cross the wire.

Every error a caller can see is one of these classes; ``type`` is the name carried in the
response payload ``{"type", "message", "details"}``. ``error_from_payload`` turns a wire payload
back into the matching exception on the caller's side.
"""

from __future__ import annotations

import builtins
from typing import Any, ClassVar

__all__ = [
    "BusinessLogicError",
    "Conflict",
    "DormantError",
    "Forbidden",
    "NotFound",
    "SystemError",
    "Throttled",
    "TimeoutError",
    "Unauthenticated",
    "Unavailable",
    "ValidationError",
    "error_from_payload",
]


class DormantError(Exception):
    """Base of every typed call error."""

    type: ClassVar[str] = "SystemError"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_payload(self) -> dict[str, Any]:
        """The wire form of this error."""
        return {"type": self.type, "message": self.message, "details": self.details}

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, details={self.details!r})"


class ValidationError(DormantError):
    """The input (or a handler's output) does not match the function's schema."""

    type = "ValidationError"


class BusinessLogicError(DormantError):
    """A domain rule was violated; raised on purpose by handler code."""

    type = "BusinessLogicError"


class SystemError(DormantError):
    """An infrastructure failure or an unexpected exception in a handler."""

    type = "SystemError"


class TimeoutError(DormantError, builtins.TimeoutError):
    """The call ran past its deadline (or the caller stopped waiting)."""

    type = "TimeoutError"


class Unauthenticated(DormantError):
    """The call carried no valid identity where one is required."""

    type = "Unauthenticated"


class Forbidden(DormantError):
    """The caller's identity may not make this call."""

    type = "Forbidden"


class NotFound(DormantError):
    """No such service, version or function."""

    type = "NotFound"


class Unavailable(DormantError):
    """Nothing is serving the target right now (no subscriber, broker down, draining)."""

    type = "Unavailable"


class Conflict(DormantError):
    """The callId was used before for a call to the same function with another input.

    Like an idempotency key reused with other parameters: the first call's answer is not this call's
    (HTTP 409 at the gateway). Nothing is stored for the refused call; the first one keeps its key.
    """

    type = "Conflict"


class Throttled(DormantError):
    """The function is at its concurrency limit: the call was refused before it ran (HTTP 429 at the
    gateway). Nothing ran, so calling again later is safe."""

    type = "Throttled"


ERROR_TYPES: dict[str, type[DormantError]] = {
    cls.type: cls
    for cls in (
        ValidationError,
        BusinessLogicError,
        SystemError,
        TimeoutError,
        Unauthenticated,
        Forbidden,
        NotFound,
        Unavailable,
        Conflict,
        Throttled,
    )
}


def error_from_payload(payload: Any) -> DormantError:
    """Build the typed exception named by a wire error payload (unknown shapes become SystemError)."""
    if not isinstance(payload, dict):
        return SystemError("malformed error response", details={"payload": payload})
    cls = ERROR_TYPES.get(str(payload.get("type")), SystemError)
    message = payload.get("message")
    return cls(message if isinstance(message, str) else str(message), payload.get("details"))
