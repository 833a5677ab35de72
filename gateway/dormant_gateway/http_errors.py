"""Typed errors as HTTP responses: the status code per error type and the typed error JSON as the body."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from dormant.errors import DormantError

STATUS_BY_TYPE: dict[str, int] = {
    "ValidationError": 400,
    "Unauthenticated": 401,
    "Forbidden": 403,
    "NotFound": 404,
    "Conflict": 409,
    "BusinessLogicError": 422,
    "Throttled": 429,
    "SystemError": 500,
    "Unavailable": 503,
    "TimeoutError": 504,
}


class HttpError(Exception):
    """An HTTP-only error outside the wire's typed set (409 Conflict, 413, 415, 429 ...)."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.details = details
        self.headers = headers or {}

    def to_payload(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "details": self.details}


def status_for(error: DormantError) -> int:
    return STATUS_BY_TYPE.get(error.type, 500)


def error_response(error: DormantError | HttpError, headers: dict[str, str] | None = None) -> JSONResponse:
    if isinstance(error, HttpError):
        return JSONResponse(
            error.to_payload(), status_code=error.status, headers={**error.headers, **(headers or {})}
        )
    return JSONResponse(error.to_payload(), status_code=status_for(error), headers=headers)


def conflict(message: str, details: Any = None) -> HttpError:
    return HttpError(409, "Conflict", message, details)
