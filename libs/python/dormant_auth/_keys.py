"""``KeySource``: the issuer's signing keys, discovered and fetched over HTTP, cached.

Why not a JWKS client from a JOSE library: PyJWT's caches keys forever and empties its cache when a
refresh fails; joserfc has none. The rules here: fetch on first use; refetch when a token names an
unknown ``kid`` (key rotation needs no restart) but at most once per ``min_refresh_s``; refetch keys
older than ``max_key_age_s``; and when a refetch fails, keep serving the keys already known (the
issuer being down does not stop calls signed with keys we have). A key set given inline
(``IssuerConfig.jwks``) is the whole truth: it is loaded once and never fetched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from dormant.errors import Unavailable

from ._config import IssuerConfig

log = logging.getLogger("dormant.auth")


class KeySource:
    def __init__(self, config: IssuerConfig, http: httpx.AsyncClient) -> None:
        self._config = config
        self._http = http
        self._jwks_url = config.jwks_url
        self.introspection_url: str | None = config.introspection_url
        """Configured, or named by the discovery document."""
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched_at = float("-inf")
        self._tried_at = float("-inf")
        self._lock = asyncio.Lock()
        if config.jwks is not None:
            self._keys = KeySet.import_key_set(json.loads(config.jwks))
            self._kids = frozenset(key.kid for key in self._keys.keys if key.kid)
            self._fetched_at = float("inf")

    @property
    def fetched_at(self) -> float:
        return self._fetched_at

    async def keys_for(self, kid: str | None) -> KeySet:
        """The key set to verify a token with ``kid``; refreshed first when the rules above say so.
        Raises ``Unavailable`` only when no keys were ever fetched."""
        if self._current(kid):
            assert self._keys is not None
            return self._keys
        async with self._lock:
            # Another call may have refreshed while this one waited for the lock.
            now = time.monotonic()
            if not self._current(kid) and now - self._tried_at >= self._config.min_refresh_s:
                self._tried_at = now
                await self._refresh()
            if self._keys is None:
                raise Unavailable("the token issuer's keys cannot be fetched")
            return self._keys

    def _current(self, kid: str | None) -> bool:
        if self._keys is None:
            return False
        if self._config.jwks is not None:
            return True  # inline keys: an unknown kid fails the signature check, there is nothing to fetch
        if time.monotonic() - self._fetched_at > self._config.max_key_age_s:
            return False
        return kid is None or kid in self._kids

    async def _refresh(self) -> None:
        try:
            url = self._jwks_url or await self._discover()
            response = await self._http.get(url)
            response.raise_for_status()
            document: Any = response.json()
            keys = KeySet.import_key_set(document)
        except (httpx.HTTPError, ValueError, TypeError, KeyError, JoseError) as exc:
            # Keep what we have: the issuer being down must not stop calls signed with known keys.
            log.warning(
                "cannot fetch the token issuer's keys (%s); %s",
                type(exc).__name__,
                "keeping the cached ones" if self._keys is not None else "no keys yet",
            )
            return
        self._keys = keys
        self._kids = frozenset(key.kid for key in keys.keys if key.kid)
        self._fetched_at = time.monotonic()

    async def _discover(self) -> str:
        response = await self._http.get(self._config.discovery)
        response.raise_for_status()
        document = response.json()
        jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
        if not isinstance(jwks_uri, str):
            raise ValueError("the OpenID configuration has no jwks_uri")
        if document.get("issuer") not in (None, self._config.issuer):
            raise ValueError("the OpenID configuration names another issuer")
        self._jwks_url = jwks_uri
        if self.introspection_url is None and isinstance(document.get("introspection_endpoint"), str):
            self.introspection_url = document["introspection_endpoint"]
        return jwks_uri
