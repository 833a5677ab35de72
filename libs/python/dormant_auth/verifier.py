"""``TokenVerifier``: an ``authorization`` value → ``UserContext``, or ``Unauthenticated``."""

from __future__ import annotations

import math
import time
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import extract_compact

from dormant.context import UserContext
from dormant.errors import Unauthenticated, Unavailable

from ._claims import user_from_claims
from ._config import IssuerConfig
from ._keys import KeySource
from ._verified import VerifiedTokens

MAX_TOKEN_BYTES = 16 * 1024
INTROSPECTION_MAX_AGE_S = 300.0
"""An introspected token is asked about again after this long even if it lives longer (it may have
been revoked)."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>`` (scheme case-insensitive); None when there is no value;
    ``Unauthenticated`` for any other shape."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated("the authorization must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated(f"the bearer token is longer than {MAX_TOKEN_BYTES} bytes")
    return token


class TokenVerifier:
    """Verifies bearer tokens of one issuer. Create one per process and ``close`` it at the end."""

    def __init__(self, config: IssuerConfig, *, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._http = http or httpx.AsyncClient(timeout=5.0, verify=config.verify_tls)
        self._owns_http = http is None
        self._keys = KeySource(config, self._http)
        self._verified = VerifiedTokens()
        self._registry = jwt.JWTClaimsRegistry(
            leeway=config.leeway_s,
            iss={"essential": True, "value": config.issuer},
            aud={"essential": True, "value": config.audience},
            exp={"essential": True},
            sub={"essential": True},
        )

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def verify(self, authorization: str | None) -> UserContext:
        """The caller of a call carrying ``authorization``; ``Unauthenticated`` for no token or a bad
        one; ``Unavailable`` only when the issuer was never reachable."""
        token = bearer_token(authorization)
        if token is None:
            raise Unauthenticated("this function requires a bearer token (authorization: Bearer <token>)")
        known = self._verified.get(token)
        if known is not None:
            return known
        if token.count(".") == 2:
            user, expires_at = await self._verify_jwt(token)
        else:
            user, expires_at = await self._introspect(token)
        self._verified.put(token, user, expires_at)
        return user

    async def _verify_jwt(self, token: str) -> tuple[UserContext, float]:
        try:
            header = extract_compact(token.encode()).protected
        except (JoseError, ValueError, TypeError):
            raise Unauthenticated("the bearer token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in self.config.algorithms:
            raise Unauthenticated(f"the bearer token's algorithm {str(alg)[:20]!r} is not accepted")
        kid = header.get("kid")
        keys: KeySet = await self._keys.keys_for(kid if isinstance(kid, str) else None)
        try:
            decoded = jwt.decode(token, keys, algorithms=list(self.config.algorithms))
        except JoseError as exc:
            raise Unauthenticated(f"the bearer token's signature is not valid ({exc.error})") from None
        except (ValueError, TypeError):
            raise Unauthenticated("the bearer token is not a well-formed JWT") from None
        claims: dict[str, Any] = dict(decoded.claims)
        try:
            self._registry.validate(claims)
        except ExpiredTokenError:
            raise Unauthenticated("the bearer token has expired") from None
        except JoseError as exc:
            raise Unauthenticated(f"the bearer token is not valid: {exc.description or exc.error}") from None
        exp = _seconds(claims.get("exp"))
        if exp is None:
            raise Unauthenticated("the bearer token has no expiry (a finite number of seconds)")
        return user_from_claims(claims, token, self.config.claims), exp

    async def _introspect(self, token: str) -> tuple[UserContext, float]:
        await self._keys.keys_for(None)  # runs discovery, which may name the introspection endpoint
        url = self._keys.introspection_url
        client_id = self.config.introspection_client_id
        if url is None or client_id is None:
            raise Unauthenticated("the bearer token is not a JWT, and opaque tokens are not accepted here")
        try:
            response = await self._http.post(
                url,
                data={"token": token, "token_type_hint": "access_token"},
                auth=(client_id, self.config.introspection_client_secret or ""),
            )
            response.raise_for_status()
            answer: Any = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise Unavailable(f"the token issuer's introspection failed ({type(exc).__name__})") from None
        if not isinstance(answer, dict) or answer.get("active") is not True:
            raise Unauthenticated("the bearer token is not active")
        if answer.get("iss", self.config.issuer) != self.config.issuer:
            raise Unauthenticated("the bearer token was issued by another issuer")
        audience = answer.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if audience is not None and self.config.audience not in audiences:
            raise Unauthenticated("the bearer token is meant for another audience")
        now = time.time()
        raw_exp = answer.get("exp")
        exp = _seconds(raw_exp)
        if raw_exp is not None and exp is None:
            raise Unauthenticated("the bearer token's expiry is not a finite number of seconds")
        expires_at = now + INTROSPECTION_MAX_AGE_S
        if exp is not None:
            if exp <= now:
                raise Unauthenticated("the bearer token has expired")
            expires_at = min(exp, expires_at)
        return user_from_claims(answer, token, self.config.claims), expires_at


def _seconds(value: object) -> float | None:
    """A claim holding seconds since the epoch as a finite float; None for anything else (a bool, a
    string, NaN, or an integer too large for a float, such as 10**400, which ``float()`` refuses with
    OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None
