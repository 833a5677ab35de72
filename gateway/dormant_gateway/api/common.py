"""Helpers every endpoint uses: the gateway state, authentication with authorization, bodies, JSON."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import Forbidden, Unauthenticated, ValidationError
from dormant_catalog.audit import AuditEvent

from ..auth import Action, Principal, allowed
from ..http_errors import HttpError
from ..inputs import check_json_text, parse_uint
from ..state import GatewayState

MiB = 1024 * 1024
DIGITS = re.compile(r"[0-9]{1,19}", re.ASCII)
SERVICE_NAME = re.compile(r"[a-z0-9-]{1,64}", re.ASCII)  # use fullmatch: "$" also matches before "\n"


def _audit(request: Request, kind: str, actor: str, action: str, detail: dict[str, Any]) -> None:
    """Buffer an audit entry for this request (the function it names, the method and the path)."""
    trail = state(request).audit
    if trail is None:
        return
    name = request.path_params.get("name")
    app_name = name.split(".")[0][:64] if isinstance(name, str) and name else None
    where = {"method": request.method, "path": request.url.path[:300]}
    client = request.client.host if request.client is not None else None
    trail.add(AuditEvent(kind, actor, app_name, action, {**where, **detail, "client": client}))


def state(request: Request) -> GatewayState:
    gateway: GatewayState = request.app.state.gateway
    return gateway


async def authenticate(request: Request) -> Principal:
    """The caller behind the bearer token, or raise ``Unauthenticated`` (recorded as a security event:
    what was asked and why it was refused, never the token)."""
    try:
        return await state(request).verifier.verify(request.headers.get("authorization"))
    except Unauthenticated as exc:
        _audit(request, "security", "anonymous", "token-refused", {"reason": str(exc)})
        raise


def require(request: Request, principal: Principal, action: Action, *, limit: str | None = None) -> None:
    """Check ``action`` against the caller's roles, then take a token from the ``limit`` bucket.

    ``limit`` names the per-user bucket (``deploy`` or ``manage``); invoke limits are per function.
    A refusal is recorded in the audit log (``authorization``).
    """
    if not allowed(principal.roles, action):
        roles = sorted(r.value for r in principal.roles) or ["none"]
        detail = {"action": action.value, "roles": roles}
        _audit(request, "authorization", principal.sub, "refused", detail)
        raise Forbidden(f"role {', '.join(roles)} may not {action.value.replace('-', ' ')}")
    if limit is not None:
        state(request).limiter.check(limit, principal.sub)


async def authorize(request: Request, action: Action, *, limit: str | None = None) -> Principal:
    """``authenticate`` and ``require`` in one step."""
    principal = await authenticate(request)
    require(request, principal, action, limit=limit)
    return principal


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes with 413."""
    declared = request.headers.get("content-length")
    if declared is not None and DIGITS.fullmatch(declared) and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> HttpError:
    return HttpError(413, "PayloadTooLarge", f"the request body exceeds {limit} bytes", {"limit": limit})


def parse_json(raw: bytes, *, empty: Any = None) -> Any:
    """The body as JSON; ``ValidationError`` for invalid JSON and for a NUL (``\u0000``) in a string."""
    if not raw.strip():
        return empty
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}") from None
    check_json_text(raw)
    return value


async def json_object(request: Request, *, limit: int = MiB) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``)."""
    value = parse_json(await read_body(request, limit), empty={})
    if not isinstance(value, dict):
        raise ValidationError("the body must be a JSON object")
    return value


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type="application/json", headers=headers)


def service_name(request: Request) -> str:
    name = str(request.path_params["name"])
    if not SERVICE_NAME.fullmatch(name):
        raise ValidationError(
            f"invalid function name {name!r}: use lowercase letters, digits and dashes (at most 64)"
        )
    return name


def int_param(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    return parse_uint(raw, f"query parameter {name!r}", low=low, high=high)
