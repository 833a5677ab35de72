"""The gateway's metrics and health endpoints, on its own HTTP server: ``GET /metrics`` (Prometheus text
format), ``GET /healthz`` (liveness) and ``GET /readyz`` (readiness), unauthenticated like ``/health``
(a gateway facing the internet keeps them off its public ingress; see docs/observability.md).

- ``HttpMetrics`` (ASGI middleware) counts every HTTP request by route template (``/api/v1/functions/
  {name}/invoke``, never the raw path, so the series stay few), method and status, and times it.
- ``MeteredClient`` (the gateway's ``dormant.Client``) counts every call the gateway makes by service,
  trigger and outcome (``ok`` or the wire error type). The trigger: ``invoke`` for the invoke API, ``http``
  for HTTP trigger routes, else the background worker making it (``async``, which also runs cron ticks
  and ``invoke-async`` calls, ``queue``, ``stream``), as ``WORKER`` says.
- Readiness: ``mqtt`` (the client is connected to the broker) and ``database`` (the catalog answers,
  one round trip reused for a second). Liveness only says the server answers.

Per-function numbers (duration, errors, throttles ...) are the controller's (``dormant_controller.metrics``),
which receives every runtime's stats windows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dormant.client import Client
from dormant.errors import DormantError
from dormant_catalog import observed
from dormant_telemetry import metrics as m
from dormant_telemetry.health import CachedProbe, Check, report

from .api.common import json_response, state
from .triggers.http import PREFIX as HTTP_TRIGGER_PREFIX

WORKER: ContextVar[str | None] = ContextVar("dormant_gateway_worker", default=None)
"""The background worker whose task (and child tasks) make a call: ``async``, ``queue``, ``stream``."""
_REQUEST: ContextVar[Scope | None] = ContextVar("dormant_gateway_request", default=None)
"""The HTTP request being answered (its scope says the matched route once routing is done)."""

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"
INVOKE_SUFFIXES = ("/invoke", "/invoke-stream")


class GatewayMetrics:
    """The gateway process's registry and its families."""

    def __init__(self) -> None:
        self.registry: CollectorRegistry = m.new_registry()
        self.http_requests = m.counter(m.HTTP_REQUESTS, self.registry)
        self.http_duration = m.histogram(m.HTTP_DURATION, self.registry)
        self.invocations = m.counter(m.GATEWAY_INVOCATIONS, self.registry)

    def invocation(self, service: str, outcome: str) -> None:
        self.invocations.labels(service, current_trigger(), outcome).inc()


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def current_trigger() -> str:
    """What made the call being made now (see the module docstring)."""
    scope = _REQUEST.get()
    if scope is not None:
        route = _route_of(scope)
        if route.startswith(HTTP_TRIGGER_PREFIX + "/") or route == HTTP_TRIGGER_PREFIX:
            return "http"
        if route.endswith(INVOKE_SUFFIXES):
            return "invoke"
        return "api"
    return WORKER.get() or "other"


class HttpMetrics:
    """ASGI middleware: count and time each HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts: an exception nobody turned into one

        async def send_counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        token = _REQUEST.set(scope)
        try:
            await self.app(scope, receive, send_counted)
        finally:
            _REQUEST.reset(token)
            route = _route_of(scope)
            method = scope.get("method", "GET")
            method = method if method in METHODS else "OTHER"
            self.metrics.http_requests.labels(route, method, str(status)).inc()
            self.metrics.http_duration.labels(route, method).observe(time.perf_counter() - started)


class MeteredClient(Client):
    """``dormant.Client`` counting each call by service, trigger and outcome."""

    def __init__(self, *args: Any, metrics: GatewayMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._metrics = metrics

    async def call(self, service: str, function: str, params: Any = None, **kwargs: Any) -> Any:
        try:
            result = await super().call(service, function, params, **kwargs)
        except DormantError as exc:
            self._metrics.invocation(service, exc.type)
            raise
        self._metrics.invocation(service, "ok")
        return result


# ---------------------------------------------------------------------------------------------- routes


async def metrics(request: Request) -> Response:
    body, content_type = m.render(_metrics_of(request).registry)
    return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})


async def healthz(request: Request) -> Response:
    status, body = report("gateway", [])
    return json_response(body, status=status)


async def readyz(request: Request) -> Response:
    status, body = report("gateway", await _ready_checks(request))
    return json_response(body, status=status, headers={"Cache-Control": "no-store"})


async def _ready_checks(request: Request) -> Sequence[Check]:
    gateway = state(request)
    probe = getattr(request.app.state, "database_probe", None)
    if probe is None:
        probe = CachedProbe("database", lambda: gateway.db.run(observed.ping))
        request.app.state.database_probe = probe
    connected = gateway.client.connected
    return [
        Check("mqtt", connected, "connected to the broker" if connected else "not connected to the broker"),
        await probe(),
    ]


def _metrics_of(request: Request) -> GatewayMetrics:
    found = getattr(request.app.state, "metrics", None)
    assert isinstance(found, GatewayMetrics), "create_app sets app.state.metrics"
    return found


def observability_routes() -> list[Route]:
    return [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]
