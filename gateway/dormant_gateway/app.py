"""The Starlette application: routes, error handlers, and the lifespan that owns the long-lived parts.

One ``dormant.Client`` (one broker connection), one pool to the catalog database, one token verifier,
and the background workers (async invocations, cron, queue consumers) per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from dormant.errors import DormantError, NotFound, SystemError, Unavailable, ValidationError
from dormant_auth import IssuerConfig
from dormant_catalog import (
    ApprovalRequired,
    CatalogError,
    CatalogUnavailable,
    ImmutableVersion,
    InvalidCatalogRequest,
    NotFoundInCatalog,
    open_database,
)
from dormant_catalog.audit_trail import AuditTrail

from . import console
from .api import config as config_api
from .api import deployments, functions, invocations, invoke, meta, triggers, versions
from .api import layers as layers_api
from .api import logs as logs_api
from .api import scaling as scaling_api
from .api import secrets as secrets_api
from .auth import PrincipalVerifier, load_or_create_dev_key
from .auth.identity import identity_from
from .config import GatewayConfig
from .hsts import StrictTransportSecurity
from .http_errors import HttpError, conflict, error_response
from .inputs import RefuseNul
from .observability import GatewayMetrics, HttpMetrics, MeteredClient, observability_routes
from .ratelimit import RateLimiter
from .state import GatewayState
from .triggers.http import http_trigger_routes
from .workers.runner import start_workers

log = logging.getLogger("dormant.gateway")

API = "/api/v1"
DB_POOL_SIZE = 10
"""Connections to the catalog database per gateway process (requests and workers share them)."""


def routes() -> list[Route]:
    return [
        Route("/health", meta.health, methods=["GET"]),
        *observability_routes(),  # /metrics, /healthz, /readyz
        Route("/.well-known/openid-configuration", meta.openid_configuration, methods=["GET"]),
        Route("/.well-known/jwks.json", meta.jwks, methods=["GET"]),
        Route("/openapi.json", meta.openapi, methods=["GET"]),
        Route(f"{API}/functions", functions.list_functions, methods=["GET"]),
        Route(f"{API}/functions", functions.create_function, methods=["POST"]),
        Route(f"{API}/functions/{{name}}/invoke", invoke.invoke, methods=["POST"]),
        Route(f"{API}/functions/{{name}}/invoke-async", invoke.invoke_async, methods=["POST"]),
        Route(f"{API}/functions/{{name}}/invoke-stream", invoke.invoke_stream, methods=["POST"]),
        Route(f"{API}/functions/{{name}}", functions.get_function, methods=["GET"]),
        Route(f"{API}/functions/{{name}}", functions.update_function, methods=["PATCH", "PUT"]),
        Route(f"{API}/functions/{{name}}", functions.delete_function, methods=["DELETE"]),
        Route(f"{API}/functions/{{name}}/restore", functions.restore_function, methods=["POST"]),
        Route(f"{API}/functions/{{name}}/environment", functions.put_environment, methods=["PUT"]),
        Route(f"{API}/functions/{{name}}/secrets", secrets_api.function_secrets, methods=["GET", "PUT"]),
        Route(f"{API}/functions/{{name}}/concurrency", functions.put_concurrency, methods=["PUT"]),
        Route(f"{API}/functions/{{name}}/scaling", scaling_api.function_scaling, methods=["GET", "PUT"]),
        Route(f"{API}/functions/{{name}}/logs", logs_api.function_logs, methods=["GET"]),
        Route(
            f"{API}/functions/{{name}}/config", config_api.function_config, methods=["GET", "PUT", "PATCH"]
        ),
        Route(f"{API}/functions/{{name}}/versions", versions.list_versions, methods=["GET"]),
        Route(f"{API}/functions/{{name}}/versions", versions.upload_version, methods=["POST"]),
        Route(f"{API}/functions/{{name}}/versions/{{version}}", versions.get_version, methods=["GET"]),
        Route(f"{API}/functions/{{name}}/versions/{{version}}", versions.delete_version, methods=["DELETE"]),
        Route(f"{API}/functions/{{name}}/aliases", versions.list_aliases, methods=["GET"]),
        Route(f"{API}/functions/{{name}}/aliases", versions.create_alias, methods=["POST"]),
        Route(f"{API}/functions/{{name}}/aliases/{{alias}}", versions.get_alias, methods=["GET"]),
        Route(f"{API}/functions/{{name}}/aliases/{{alias}}", versions.put_alias, methods=["PUT"]),
        Route(f"{API}/functions/{{name}}/triggers", triggers.list_triggers, methods=["GET"]),
        Route(f"{API}/functions/{{name}}/triggers", triggers.create_trigger, methods=["POST"]),
        Route(f"{API}/functions/{{name}}/triggers/{{trigger_id}}", triggers.get_trigger, methods=["GET"]),
        Route(
            f"{API}/functions/{{name}}/triggers/{{trigger_id}}", triggers.delete_trigger, methods=["DELETE"]
        ),
        Route(
            f"{API}/functions/{{name}}/triggers/{{trigger_id}}/enable",
            triggers.enable_trigger,
            methods=["PUT"],
        ),
        Route(
            f"{API}/functions/{{name}}/triggers/{{trigger_id}}/disable",
            triggers.disable_trigger,
            methods=["PUT"],
        ),
        Route(f"{API}/invocations", invocations.list_invocations, methods=["GET"]),
        Route(f"{API}/invocations/{{call_id}}", invocations.get_invocation, methods=["GET"]),
        Route(f"{API}/deployments", deployments.create_deployment, methods=["POST"]),
        Route(f"{API}/deployments/{{name}}", deployments.get_deployment, methods=["GET"]),
        Route(f"{API}/deployments/{{name}}/rollback", deployments.rollback, methods=["POST"]),
        Route(f"{API}/deployments/{{name}}/promote", deployments.promote, methods=["POST"]),
        Route(f"{API}/layers", layers_api.list_layers, methods=["GET"]),
        Route(f"{API}/layers", layers_api.create_layer, methods=["POST"]),
        Route(f"{API}/layers/{{name}}/versions", layers_api.list_versions, methods=["GET"]),
        Route(f"{API}/layers/{{name}}/versions", layers_api.publish_version, methods=["POST"]),
        Route(f"{API}/functions/{{name}}/layers", layers_api.get_function_layers, methods=["GET"]),
        Route(f"{API}/functions/{{name}}/layers", layers_api.put_function_layers, methods=["PUT"]),
        *console.routes(),
        *http_trigger_routes(),
    ]


async def _dormant_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DormantError)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HttpError)
    return error_response(exc)


async def _catalog_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotFoundInCatalog):
        return error_response(NotFound(str(exc)))
    if isinstance(exc, InvalidCatalogRequest):
        return error_response(ValidationError(str(exc)))
    if isinstance(exc, ImmutableVersion):
        return error_response(conflict(str(exc)))
    if isinstance(exc, ApprovalRequired):  # a breaking version, not approved, was to go live
        record = exc.record
        details = {"version": exc.version, "comparedTo": record.compared_to, "findings": record.breaks}
        return error_response(conflict(str(exc), details))
    if isinstance(exc, CatalogUnavailable):
        log.warning("catalog unavailable: %s", exc)
        return error_response(Unavailable("the catalog database is unavailable"))
    log.error("catalog error: %s", exc)
    return error_response(SystemError("catalog error"))


async def _starlette_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    names = {404: "NotFound", 405: "MethodNotAllowed"}
    error = HttpError(exc.status_code, names.get(exc.status_code, "HttpError"), str(exc.detail))
    return error_response(error, headers=dict(exc.headers or {}))


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client closed the connection (or the server's read timeout did) mid-body: nobody reads this.
    return error_response(HttpError(408, "RequestTimeout", "the request body did not arrive"))


async def _unexpected(request: Request, exc: Exception) -> Response:
    incident = uuid.uuid4().hex[:12]
    log.exception("unexpected error (incident %s) on %s %s", incident, request.method, request.url.path)
    return error_response(SystemError("unexpected gateway error", {"incident": incident}))


def create_app(config: GatewayConfig) -> Starlette:
    metrics = GatewayMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            dev_key = load_or_create_dev_key(config.state_dir) if config.dev_auth else None
            db = await open_database(config.catalog_url, max_size=DB_POOL_SIZE)
            stack.push_async_callback(db.close)
            # The client sends no token by default: a call for an HTTP caller carries that caller's token
            # (forwarded as a header), a call the gateway makes on its own carries the gateway's.
            client = MeteredClient(
                config.broker_url,
                client_id=f"dormant-gateway-{uuid.uuid4().hex[:12]}",
                authorization="",
                metrics=metrics,
            )
            await client.connect()
            stack.push_async_callback(client.close)
            # The dev key's public half is given inline, not fetched from this gateway's own URL (which
            # may be HTTPS with a certificate for another name). Without a JWKS URL, the issuer's
            # OpenID configuration names it.
            verifier = PrincipalVerifier(
                IssuerConfig(
                    issuer=config.issuer,
                    audience=config.oidc_audience,
                    jwks_url=config.oidc_jwks_url,
                    jwks=None if dev_key is None else json.dumps(dev_key.jwks()),
                )
            )
            stack.push_async_callback(verifier.close)
            identity = identity_from(
                dev_key=dev_key,
                issuer=config.issuer,
                audience=config.oidc_audience,
                oidc_issuer=config.oidc_issuer,
                client_id=config.gateway_client_id,
                client_secret=config.gateway_client_secret,
            )
            if identity is None:
                log.warning(
                    "no DORMANT_GATEWAY_CLIENT_ID: cron, queue and async calls and public HTTP triggers "
                    "carry no token, so services with auth='required' refuse them"
                )
            else:
                stack.push_async_callback(identity.close)
            limits = config.rate_limits
            audit = AuditTrail(config.catalog_url, executions="off")  # refused tokens and roles, batched
            stack.push_async_callback(audit.close)
            gateway = GatewayState(
                config=config,
                client=client,
                db=db,
                verifier=verifier,
                limiter=RateLimiter(
                    {
                        "invoke": limits.invoke_per_min,
                        "deploy": limits.deploy_per_min,
                        "manage": limits.manage_per_min,
                    }
                ),
                dev_key=dev_key,
                identity=identity,
                audit=audit,
            )
            app.state.gateway = gateway
            app.state.metrics = metrics
            stack.push_async_callback(console.stop, app)  # the console's live feed, if it was used
            tasks: list[asyncio.Task[None]] = start_workers(gateway) if config.workers else []
            try:
                yield
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    middleware = [Middleware(HttpMetrics, metrics=metrics), Middleware(RefuseNul)]
    if config.tls and config.hsts_max_age_s > 0:
        # First: outside RefuseNul, so its 400s carry the header too.
        middleware.insert(0, Middleware(StrictTransportSecurity, max_age_s=config.hsts_max_age_s))
    return Starlette(
        routes=routes(),
        lifespan=lifespan,
        middleware=middleware,
        exception_handlers={
            ClientDisconnect: _client_gone,
            DormantError: _dormant_error,
            HttpError: _http_error,
            CatalogError: _catalog_error,
            HTTPException: _starlette_error,
            Exception: _unexpected,
        },
    )
