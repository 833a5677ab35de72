"""Unauthenticated endpoints: ``/health``, the OpenID configuration and JWKS of the dev issuer, OpenAPI."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound

from ..openapi import openapi_document
from .common import json_response, state


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


async def openid_configuration(request: Request) -> Response:
    gateway = state(request)
    if gateway.dev_key is None:
        raise NotFound("this gateway trusts an external issuer; ask it for its configuration")
    base = str(request.base_url).rstrip("/")
    return json_response(
        {
            "issuer": gateway.config.issuer,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "id_token_signing_alg_values_supported": ["ES256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "claims_supported": ["sub", "roles", "iss", "aud", "exp", "iat"],
        }
    )


async def jwks(request: Request) -> Response:
    gateway = state(request)
    if gateway.dev_key is None:
        raise NotFound("this gateway has no dev signing key")
    return json_response(gateway.dev_key.jwks(), headers={"Cache-Control": "max-age=60"})


async def openapi(request: Request) -> Response:
    return json_response(openapi_document(str(request.base_url).rstrip("/")))
