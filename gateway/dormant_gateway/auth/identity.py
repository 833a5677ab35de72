"""The gateway's own identity: the bearer token it sends on the calls it makes by itself (cron ticks,
queue messages, async invocations, HTTP triggers with ``"auth": "none"``).

Where the token comes from:

- ``ClientCredentials``: with an identity provider (``DORMANT_OIDC_ISSUER``), an OAuth 2 client-credentials
  token (RFC 6749 §4.4) for ``DORMANT_GATEWAY_CLIENT_ID``/``DORMANT_GATEWAY_CLIENT_SECRET``, from the
  token endpoint named by the issuer's OpenID configuration (found the way ``dormant_auth`` finds the key
  set). The grant is one form POST with HTTP Basic client authentication, made here with httpx: authlib,
  whose httpx OAuth 2 client would do it, is not installed in Dormant's environment, and one POST is not
  worth a new dependency.
- ``DevKeyTokens``: without a provider, the gateway is its own dev issuer and signs a token with its dev
  key, for the subject ``dormant-gateway``.

Either token holds no roles: a function that receives it (``ctx.user.token``) cannot use it to manage the
gateway, and a function with ``roles=`` refuses it.

``GatewayIdentity`` keeps the token and fetches a new one before the old one expires
(``min(REFRESH_BEFORE_S, lifetime / 2)`` ahead), so a call never waits for the provider while the token in
hand is good. A failed fetch is tried again on a later call after a backoff (1 s, doubling up to 60 s);
meanwhile the current token serves while it is valid, and without one the call fails with
``Unavailable`` (the workers retry it). Neither the token nor the client secret is ever logged, nor in a
``repr`` or an error message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from dormant.errors import Unavailable

from .keys import DevKey
from .tokens import mint_token

log = logging.getLogger("dormant.gateway.identity")

GATEWAY_SUBJECT = "dormant-gateway"
"""The subject of the dev-key token (and the client id the dev mesh registers at its provider, whose
client-credentials tokens name the client as their subject)."""
DEV_TOKEN_TTL_S = 3600.0
REFRESH_BEFORE_S = 300.0
"""A token is replaced this long before it expires (or halfway through a shorter life)."""
USABLE_MARGIN_S = 10.0
"""A token this close to its expiry is not sent: the runtime would refuse it on arrival."""
DEFAULT_LIFETIME_S = 300.0
"""Assumed when the provider says neither ``expires_in`` nor ``exp``."""
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 60.0
HTTP_TIMEOUT_S = 10.0


class TokenFetchError(Exception):
    """A token source could not issue a token. The message names what failed, never a secret."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str = field(repr=False)
    lifetime_s: float


class TokenSource(Protocol):
    async def fetch(self) -> IssuedToken:
        """A new token, or ``TokenFetchError``."""
        ...

    async def close(self) -> None: ...


class DevKeyTokens:
    """Tokens signed with the gateway's dev key (the gateway is its own issuer)."""

    def __init__(self, key: DevKey, *, issuer: str, audience: str, ttl_s: float = DEV_TOKEN_TTL_S) -> None:
        self._key = key
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = ttl_s

    async def fetch(self) -> IssuedToken:
        token = mint_token(
            self._key,
            sub=GATEWAY_SUBJECT,
            roles=(),
            ttl_s=self._ttl_s,
            issuer=self._issuer,
            audience=self._audience,
        )
        return IssuedToken(token, self._ttl_s)

    async def close(self) -> None:
        return None


class ClientCredentials:
    """Client-credentials tokens from the issuer's token endpoint (client_secret_basic)."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str,
        discovery_url: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._client_secret = client_secret
        self._discovery_url = discovery_url or issuer.rstrip("/") + "/.well-known/openid-configuration"
        self._http = http or httpx.AsyncClient(timeout=HTTP_TIMEOUT_S)
        self._owns_http = http is None
        self._token_url: str | None = None

    def __repr__(self) -> str:
        return f"ClientCredentials(issuer={self.issuer!r}, client_id={self.client_id!r})"

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def fetch(self) -> IssuedToken:
        url = self._token_url or await self._discover()
        # RFC 6749 §2.3.1: the client id and secret are form-encoded before they go into Basic auth.
        auth = httpx.BasicAuth(quote(self.client_id, safe=""), quote(self._client_secret, safe=""))
        try:
            response = await self._http.post(
                url,
                data={"grant_type": "client_credentials"},
                auth=auth,
                headers={"Accept": "application/json"},
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TokenFetchError(f"the token endpoint cannot be reached ({type(exc).__name__})") from None
        body = _json_object(response)
        if response.status_code != 200:
            error = body.get("error")
            code = error if isinstance(error, str) else "no error code"
            self._token_url = None  # found again next time, in case the provider moved it
            raise TokenFetchError(f"the token endpoint answered {response.status_code} ({code[:100]})")
        token = body.get("access_token")
        token_type = body.get("token_type")
        if not isinstance(token, str) or not token:
            raise TokenFetchError("the token endpoint's answer has no access_token")
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise TokenFetchError("the token endpoint's answer is not a bearer token")
        return IssuedToken(token, _lifetime_s(body.get("expires_in"), token))

    async def _discover(self) -> str:
        try:
            response = await self._http.get(self._discovery_url)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise TokenFetchError(
                f"the OpenID configuration cannot be fetched ({type(exc).__name__})"
            ) from None
        document = _json_object(response)
        if response.status_code != 200:
            raise TokenFetchError(f"the OpenID configuration answered {response.status_code}")
        if document.get("issuer") not in (None, self.issuer):
            raise TokenFetchError("the OpenID configuration names another issuer")
        url = document.get("token_endpoint")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise TokenFetchError("the OpenID configuration names no token_endpoint")
        self._token_url = url
        return url


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _lifetime_s(expires_in: Any, token: str) -> float:
    """``expires_in`` if the provider said it, else the JWT's own ``exp`` (read, not trusted: it only
    decides when to ask again), else ``DEFAULT_LIFETIME_S``."""
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0:
        return float(expires_in)
    parts = token.split(".")
    if len(parts) == 3:
        try:
            claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        except (ValueError, binascii.Error):
            claims = None
        exp = claims.get("exp") if isinstance(claims, dict) else None
        if isinstance(exp, int | float) and not isinstance(exp, bool) and exp > time.time():
            return float(exp) - time.time()
    return DEFAULT_LIFETIME_S


class GatewayIdentity:
    """The gateway's current token, refreshed before it expires; ``authorization()`` gives the header."""

    def __init__(self, source: TokenSource, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._source = source
        self._clock = clock
        self._token: str | None = None
        self._expires_at = float("-inf")
        self._refresh_at = float("-inf")
        self._failures = 0
        self._next_try_at = float("-inf")
        self._last_error = "no token fetched yet"
        self._lock = asyncio.Lock()
        self.fetches = 0
        """Tokens fetched (for tests and metrics)."""

    def __repr__(self) -> str:
        return f"GatewayIdentity({self._source!r})"

    async def close(self) -> None:
        await self._source.close()

    async def authorization(self) -> str:
        """``Bearer <token>``; ``Unavailable`` when no usable token can be had."""
        now = self._clock()
        if self._token is not None and now < self._refresh_at:
            return self._header()
        if self._usable(now) and self._lock.locked():
            return self._header()  # another call is fetching the next one: this one is still good
        async with self._lock:
            now = self._clock()
            if self._token is not None and now < self._refresh_at:
                return self._header()
            if now >= self._next_try_at:
                await self._fetch(now)
            if self._usable(self._clock()):
                return self._header()
            raise Unavailable(f"the gateway has no token of its own: {self._last_error}")

    async def _fetch(self, started: float) -> None:
        try:
            issued = await self._source.fetch()
        except TokenFetchError as exc:
            self._failures += 1
            delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (self._failures - 1))
            self._next_try_at = self._clock() + delay
            self._last_error = str(exc)
            log.warning(
                "the gateway's own token: %s; trying again in %gs%s",
                exc,
                delay,
                " (the current one is still valid)" if self._usable(self._clock()) else "",
            )
            return
        self.fetches += 1
        self._failures = 0
        self._next_try_at = float("-inf")
        self._token = issued.access_token
        # Counted from before the request: the token cannot outlive what the provider granted.
        self._expires_at = started + issued.lifetime_s
        self._refresh_at = self._expires_at - min(REFRESH_BEFORE_S, issued.lifetime_s / 2)

    def _usable(self, now: float) -> bool:
        return self._token is not None and now < self._expires_at - USABLE_MARGIN_S

    def _header(self) -> str:
        assert self._token is not None
        return f"Bearer {self._token}"


def identity_from(
    *,
    dev_key: DevKey | None,
    issuer: str,
    audience: str,
    oidc_issuer: str | None,
    client_id: str | None,
    client_secret: str | None,
) -> GatewayIdentity | None:
    """The gateway's identity for its settings: the dev key's, a client's at ``oidc_issuer``, or None
    (no client configured: the gateway's own calls carry no token). ``ValueError`` for settings that
    cannot work together."""
    if bool(client_id) != bool(client_secret):
        raise ValueError("DORMANT_GATEWAY_CLIENT_ID and DORMANT_GATEWAY_CLIENT_SECRET go together")
    if dev_key is not None:
        if client_id:
            raise ValueError(
                "DORMANT_GATEWAY_CLIENT_ID is set but no DORMANT_OIDC_ISSUER: the gateway is its own "
                "dev issuer and signs its token with its dev key"
            )
        return GatewayIdentity(DevKeyTokens(dev_key, issuer=issuer, audience=audience))
    if not client_id or not client_secret:
        return None
    if oidc_issuer is None:
        raise ValueError(
            "DORMANT_GATEWAY_CLIENT_ID needs DORMANT_OIDC_ISSUER (its OpenID configuration names the "
            "token endpoint)"
        )
    return GatewayIdentity(
        ClientCredentials(issuer=oidc_issuer, client_id=client_id, client_secret=client_secret)
    )
