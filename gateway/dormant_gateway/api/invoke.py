"""Invoke endpoints: synchronous, asynchronous (persisted, retried) and server-sent events.

``POST /api/v1/functions/{service.function}/invoke|invoke-async|invoke-stream``; the query parameters
``alias`` and ``version`` (or the seed's body form) select the target; ``Idempotency-Key`` (or a
CloudEvent's source and id) fixes the callId, so a retry of the same request is de-duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dormant import _tracing, callid
from dormant.errors import DormantError, SystemError, ValidationError
from dormant_catalog.gateway import invocations as invocation_sql

from ..auth import Action, Principal
from ..inputs import parse_decimal, parse_uint
from ..invoke_input import InvokeInput, derive_call_id, parse_invoke_input, parse_version, split_target
from ..state import GatewayState
from ..targets import check_target, explain_unavailable, route
from ..triggers.settings import ALIAS
from .common import MiB, authorize, json_response, read_body, state

SYNC_LIMIT = 6 * MiB
ASYNC_LIMIT = 256 * 1024
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 900.0
SSE_KEEPALIVE_S = 15.0


class Prepared:
    """A parsed, authorized invoke request."""

    def __init__(
        self,
        principal: Principal,
        service: str,
        function: str,
        body: InvokeInput,
        call_id: str | None,
        timeout: float,
    ) -> None:
        self.principal = principal
        self.service = service
        self.function = function
        self.body = body
        self.call_id = call_id
        self.timeout = timeout


async def _prepare(request: Request, limit: int) -> Prepared:
    gateway = state(request)
    principal = await authorize(request, Action.INVOKE)
    target = str(request.path_params["name"])
    service, function = split_target(target)
    gateway.limiter.check("invoke", target)
    raw = await read_body(request, limit)
    body = parse_invoke_input(request.headers.get("content-type", ""), request.headers, raw)
    alias = request.query_params.get("alias") or body.alias
    version = parse_version(request.query_params.get("version")) or body.version
    if alias is not None and not ALIAS.fullmatch(alias):
        raise ValidationError(f"invalid alias {alias[:80]!r}: $LATEST, live or an alias name")
    body.alias, body.version = alias, version
    await check_target(gateway, service, version)
    info = await gateway.function_info(service)
    timeout = _timeout(request, info.timeout_s)
    key = request.headers.get("idempotency-key")
    call_id: str | None = None
    if key:
        if len(key) > 255:
            raise ValidationError("Idempotency-Key is longer than 255 characters")
        call_id = derive_call_id(principal.sub, target, key)
    elif body.event_key is not None:
        call_id = derive_call_id("cloudevents", target, body.event_key)
    if "traceparent" in request.headers:
        body.headers["traceparent"] = request.headers["traceparent"]
        if "tracestate" in request.headers:
            body.headers["tracestate"] = request.headers["tracestate"]
    authorization = request.headers.get("authorization")
    if authorization:
        body.headers["authorization"] = authorization
    return Prepared(principal, service, function, body, call_id, timeout)


def _timeout(request: Request, configured: float | None) -> float:
    raw = request.query_params.get("timeout")
    if raw:
        value = parse_decimal(raw, "timeout (seconds)")
        if not 0 < value <= MAX_TIMEOUT_S:
            raise ValidationError(f"timeout must be more than 0 and at most {MAX_TIMEOUT_S:g} seconds")
        return value
    return configured or DEFAULT_TIMEOUT_S


async def _call(gateway: GatewayState, p: Prepared, call_id: str) -> tuple[Any, int | None]:
    # One function.invoke span (continuing the request's traceparent) over the version pick and the call.
    with _tracing.invocation(p.service, p.function, trigger="http", headers=p.body.headers, call_id=call_id):
        version = await route(gateway, p.service, alias=p.body.alias, version=p.body.version)
        try:
            result = await gateway.client.call(
                p.service,
                p.function,
                p.body.params,
                timeout=p.timeout,
                version=version,
                call_id=call_id,
                headers=p.body.headers,
            )
        except DormantError as exc:
            explained = await explain_unavailable(gateway, p.service, p.function, version, exc)
            if explained is exc:
                raise
            raise explained from None
    return result, version


async def invoke(request: Request) -> Response:
    gateway = state(request)
    p = await _prepare(request, SYNC_LIMIT)
    call_id = p.call_id or callid.fresh()
    started = time.perf_counter()
    headers = {"X-Dormant-Call-Id": call_id}
    try:
        result, version = await _call(gateway, p, call_id)
    except DormantError as exc:
        exc.details = _with_call_id(exc.details, call_id)
        raise
    elapsed_ms = round((time.perf_counter() - started) * 1000, 3)
    if version is not None:
        headers["X-Dormant-Version"] = str(version)
    encoded = orjson.dumps(result)
    if len(encoded) > SYNC_LIMIT:
        raise SystemError("the function's response exceeds 6 MiB", {"callId": call_id})
    headers["X-Dormant-Execution-Ms"] = f"{elapsed_ms:g}"
    if p.body.seed_form:
        return json_response(
            {"statusCode": 200, "body": encoded.decode(), "executionTime": elapsed_ms, "callId": call_id},
            headers=headers,
        )
    return Response(encoded, media_type="application/json", headers=headers)


def _with_call_id(details: Any, call_id: str) -> Any:
    if details is None:
        return {"callId": call_id}
    if isinstance(details, dict) and "callId" not in details:
        return {**details, "callId": call_id}
    return details


async def invoke_async(request: Request) -> Response:
    gateway = state(request)
    p = await _prepare(request, ASYNC_LIMIT)
    if p.body.alias is not None or p.body.version is not None:
        # Fail now rather than on every attempt when the alias or version does not exist.
        await route(gateway, p.service, alias=p.body.alias, version=p.body.version)
    call_id = p.call_id or callid.fresh("async-")
    settings = gateway.config.async_settings
    attempts = request.query_params.get("maxAttempts")
    max_attempts = settings.max_attempts
    if attempts:
        max_attempts = parse_uint(attempts, "maxAttempts", low=1, high=100)
    record, new = await gateway.db.run(
        invocation_sql.enqueue,
        call_id=call_id,
        app_name=p.service,
        function=p.function,
        version=p.body.version,
        alias=p.body.alias,
        payload={"params": p.body.params, "headers": _stored_headers(p.body.headers)},
        max_attempts=max_attempts,
        timeout_s=p.timeout,
        created_by=p.principal.sub,
    )
    if new:
        gateway.invocations_ready.set()
    location = f"/api/v1/invocations/{record.call_id}"
    return json_response(
        {"callId": record.call_id, "status": record.status, "location": location},
        status=202,
        headers={"Location": location, "X-Dormant-Call-Id": record.call_id},
    )


def _stored_headers(headers: dict[str, str]) -> dict[str, str]:
    """Call headers worth keeping with a persisted invocation: never the caller's token."""
    return {k: v for k, v in headers.items() if k != "authorization"}


async def invoke_stream(request: Request) -> Response:
    gateway = state(request)
    p = await _prepare(request, SYNC_LIMIT)
    call_id = p.call_id or callid.fresh()

    async def events() -> AsyncIterator[bytes]:
        yield _sse("accepted", {"callId": call_id})
        task = asyncio.create_task(_call(gateway, p, call_id))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=SSE_KEEPALIVE_S)
                if done:
                    break
                yield b": waiting\n\n"
            try:
                result, version = task.result()
            except DormantError as exc:
                exc.details = _with_call_id(exc.details, call_id)
                yield _sse("error", exc.to_payload())
                return
            yield _sse("result", {"callId": call_id, "version": version, "result": result})
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, DormantError):
                    await task

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Dormant-Call-Id": call_id},
    )


def _sse(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
