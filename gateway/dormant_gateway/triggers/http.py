"""HTTP triggers: requests under ``/http/...`` routed by method and path pattern to a function.

The request becomes an event ``{httpMethod, path, pathParameters, queryStringParameters, headers,
body, isBase64Encoded, requestContext}``; a result shaped ``{statusCode, headers, body}`` becomes the
HTTP response (any other result is returned as JSON with 200). CORS headers and preflight answers
follow the trigger's ``cors`` settings.

Who the call runs as: with ``"auth": "jwt"`` the verified HTTP caller (their token is the call's
``authorization``); with ``"auth": "none"`` the gateway itself (``auth/identity.py``). Either way the
trigger's owner is named in ``x-dormant-trigger-owner`` (``auth/acting.py``).
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import replace
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dormant import _tracing, callid, wire
from dormant.errors import DormantError, NotFound, ValidationError
from dormant_catalog.gateway import TriggerRecord
from dormant_catalog.gateway import triggers as trigger_sql

from ..api.common import authorize, read_body, state
from ..auth import Action
from ..auth.acting import trigger_headers
from ..http_errors import error_response
from ..invoke_input import split_target
from ..targets import explain_unavailable, route
from .paths import PathPattern, best_match
from .settings import validate_trigger

log = logging.getLogger("dormant.gateway.http")

PREFIX = "/http"
CACHE_S = 1.0
MAX_BODY = 6 * 1024 * 1024


class HttpTriggerTable:
    """Enabled HTTP triggers, reloaded at most once a second (at once after a change on this replica)."""

    def __init__(self) -> None:
        self._loaded_at = float("-inf")
        self._generation = -1
        self._entries: list[tuple[PathPattern, TriggerRecord]] = []

    async def match(self, request: Request, path: str) -> tuple[TriggerRecord, dict[str, str]] | None:
        gateway = state(request)
        now = time.monotonic()
        if gateway.trigger_generation != self._generation or now - self._loaded_at > CACHE_S:
            self._generation = gateway.trigger_generation
            records = await gateway.db.run(trigger_sql.enabled_triggers, "http")
            self._entries = [entry for entry in map(_entry, records) if entry is not None]
            self._loaded_at = now
        method = request.method.upper()
        candidates = [
            (p, r)
            for p, r in self._entries
            if method == "OPTIONS" or "ANY" in r.config["methods"] or method in r.config["methods"]
        ]
        found = best_match([p for p, _ in candidates], path)
        if found is None:
            return None
        pattern, params = found
        record = next(r for p, r in candidates if p is pattern)
        return record, params


def _entry(record: TriggerRecord) -> tuple[PathPattern, TriggerRecord] | None:
    """The pattern of a stored trigger, or None (logged) for a row that does not hold a valid one.

    Rows are validated on the way in, but one written some other way must not take the others down.
    """
    try:
        config = validate_trigger({"type": "http", "function": record.target, "config": record.config})[2]
    except (ValidationError, TypeError, AttributeError) as exc:
        if record.trigger_id not in _warned:
            _warned.add(record.trigger_id)
            log.error("HTTP trigger %s skipped: %s", record.trigger_id, exc)
        return None
    return PathPattern.parse(config["path"]), replace(record, config=config)


_warned: set[str] = set()


def _table(request: Request) -> HttpTriggerTable:
    table: HttpTriggerTable | None = getattr(request.app.state, "http_triggers", None)
    if table is None:
        table = request.app.state.http_triggers = HttpTriggerTable()
    return table


def _cors_headers(cors: dict[str, Any] | None, origin: str | None) -> dict[str, str]:
    if not cors or not origin:
        return {}
    origins = cors["allowOrigins"]
    if "*" not in origins and origin not in origins:
        return {}
    headers = {
        "Access-Control-Allow-Origin": origin if cors["allowCredentials"] or "*" not in origins else "*"
    }
    if cors["allowCredentials"]:
        headers["Access-Control-Allow-Credentials"] = "true"
    headers["Vary"] = "Origin"
    return headers


async def handle(request: Request) -> Response:
    path = "/" + str(request.path_params.get("path", ""))
    if any(segment in (".", "..") for segment in path.split("/")):
        raise ValidationError("the path has a '.' or '..' segment")
    matched = await _table(request).match(request, path)
    if matched is None:
        raise NotFound(f"no HTTP trigger matches {request.method} {path}")
    record, params = matched
    cors: dict[str, Any] | None = record.config.get("cors")
    origin = request.headers.get("origin")
    if request.method == "OPTIONS" and cors and request.headers.get("access-control-request-method"):
        headers = _cors_headers(cors, origin)
        if headers:
            headers.update(
                {
                    "Access-Control-Allow-Methods": ", ".join(cors["allowMethods"]),
                    "Access-Control-Allow-Headers": ", ".join(cors["allowHeaders"]),
                    "Access-Control-Max-Age": str(cors["maxAge"]),
                }
            )
        return Response(status_code=204, headers=headers)
    gateway = state(request)
    as_caller = record.config.get("auth", "jwt") == "jwt"
    if as_caller:
        await authorize(request, Action.INVOKE)
    service, function = split_target(f"{record.function_name}.{record.target}")
    gateway.limiter.check("invoke", f"{service}.{function}")
    raw = await read_body(request, MAX_BODY)
    call_id = callid.fresh()
    try:
        text, is_b64 = raw.decode(), False
    except UnicodeDecodeError:
        text, is_b64 = base64.b64encode(raw).decode(), True
    if "\x00" in text:  # binary in all but name (and Postgres refuses NUL in text): send it as base64
        text, is_b64 = base64.b64encode(raw).decode(), True
    event = {
        "httpMethod": request.method,
        "path": path,
        "pathParameters": params,
        "queryStringParameters": dict(request.query_params),
        "headers": {k: v for k, v in request.headers.items() if k != "authorization"},
        "body": text,
        "isBase64Encoded": is_b64,
        "requestContext": {
            "triggerId": record.trigger_id,
            "callId": call_id,
            "pattern": record.config["path"],
        },
    }
    # The caller's W3C trace context (when valid) goes on with the call, and the gateway's
    # function.invoke span (when it traces) continues it.
    traced = wire.trace_context(request.headers)
    with _tracing.invocation(service, function, trigger="http", headers=traced, call_id=call_id) as span:
        version = await route(
            gateway, service, alias=record.config.get("alias"), version=record.config.get("version")
        )
        info = await gateway.function_info(service)
        headers = {"X-Dormant-Call-Id": call_id, **_cors_headers(cors, origin)}
        try:
            # With "jwt" the call runs as the verified caller: their token is the call's authorization, as
            # on the invoke API (never in the event, whose headers leave it out). A public route calls as
            # the gateway itself: a web caller's own header is not verified there, so it is not forwarded.
            authorization = (
                request.headers["authorization"] if as_caller else await gateway.own_authorization()
            )
        except DormantError as exc:  # the gateway has no token of its own right now (Unavailable)
            await gateway.db.run(trigger_sql.add_metrics, record.trigger_id, fired=1, failed=1)
            _tracing.failed(span, exc)
            return error_response(exc, headers)
        try:
            result = await gateway.client.call(
                service,
                function,
                event,
                timeout=info.timeout_s or 30.0,
                version=version,
                call_id=call_id,
                headers={**trigger_headers(record.created_by), **traced},
                authorization=authorization,
            )
        except DormantError as exc:
            error = await explain_unavailable(gateway, service, function, version, exc)
            await gateway.db.run(trigger_sql.add_metrics, record.trigger_id, fired=1, failed=1)
            _tracing.failed(span, error)
            return error_response(error, headers)
    await gateway.db.run(trigger_sql.add_metrics, record.trigger_id, fired=1, succeeded=1)
    return _to_response(result, headers)


def _to_response(result: Any, headers: dict[str, str]) -> Response:
    if (
        isinstance(result, dict)
        and isinstance(result.get("statusCode"), int)
        and 100 <= result["statusCode"] <= 599
    ):
        raw_headers = result.get("headers")
        extra: dict[str, Any] = raw_headers if isinstance(raw_headers, dict) else {}
        out = {**{str(k): str(v) for k, v in extra.items()}, **headers}
        body = result.get("body", "")
        if result.get("isBase64Encoded") and isinstance(body, str):
            content: bytes = base64.b64decode(body)
        elif isinstance(body, str):
            content = body.encode()
        else:
            content = orjson.dumps(body)
            out.setdefault("content-type", "application/json")
        return Response(content, status_code=result["statusCode"], headers=out)
    return Response(orjson.dumps(result), media_type="application/json", headers=headers)


def http_trigger_routes() -> list[Route]:
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return [
        Route(f"{PREFIX}/{{path:path}}", handle, methods=methods),
        Route(PREFIX, handle, methods=methods),
    ]
