"""Verifying bearer tokens against the issuer's JWKS, fetched over HTTP and cached.

The JWKS URL is configured, or discovered from ``{issuer}/.well-known/openid-configuration``. An
unknown ``kid`` refetches the key set (at most once per ``refresh_interval_s``), so key rotation at the
issuer needs no restart.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import jwt

from dormant.errors import Unauthenticated, Unavailable

from .principal import Principal
from .roles import parse_roles

ALGORITHMS = ["ES256", "RS256", "PS256", "EdDSA"]


class TokenVerifier:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        discovery_url: str | None = None,
        refresh_interval_s: float = 10.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if jwks_url is None and discovery_url is None:
            raise ValueError("a JWKS URL or an OpenID discovery URL is needed")
        self.issuer = issuer
        self.audience = audience
        self._jwks_url = jwks_url
        self._discovery_url = discovery_url
        self._refresh_interval_s = refresh_interval_s
        self._http = http or httpx.AsyncClient(timeout=5.0)
        self._owns_http = http is None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def verify(self, authorization: str | None) -> Principal:
        """The principal of an ``Authorization: Bearer <jwt>`` header, or raise ``Unauthenticated``."""
        if not authorization:
            raise Unauthenticated("a bearer token is required (Authorization: Bearer <jwt>)")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header must be 'Bearer <jwt>'")
        token = token.strip()
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the bearer token is not a JWT") from None
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else None)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "sub"]},
                leeway=5,
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the bearer token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the bearer token is not valid: {exc}") from None
        return Principal(sub=str(claims["sub"]), roles=parse_roles(claims.get("roles")), claims=claims)

    async def _key(self, kid: str | None) -> jwt.PyJWK:
        async with self._lock:
            if not self._keys or (
                (kid is None or kid not in self._keys)
                and time.monotonic() - self._fetched_at >= self._refresh_interval_s
            ):
                await self._refresh()
            if kid is None and len(self._keys) == 1:
                return next(iter(self._keys.values()))
            if kid is None or kid not in self._keys:
                raise Unauthenticated("the bearer token is signed by an unknown key")
            return self._keys[kid]

    async def _refresh(self) -> None:
        try:
            url = self._jwks_url or await self._discover()
            response = await self._http.get(url)
            response.raise_for_status()
            key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
            raise Unavailable(f"cannot fetch the token issuer's keys: {type(exc).__name__}") from None
        self._keys = {k.key_id or str(i): k for i, k in enumerate(key_set.keys)}
        self._fetched_at = time.monotonic()

    async def _discover(self) -> str:
        assert self._discovery_url is not None
        response = await self._http.get(self._discovery_url)
        response.raise_for_status()
        jwks_uri = response.json().get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise ValueError("the OpenID configuration has no jwks_uri")
        self._jwks_url = jwks_uri
        return jwks_uri
