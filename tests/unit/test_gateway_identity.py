"""The gateway's own identity (``dormant_gateway.auth.identity``): a token kept and refreshed before it
expires, failures retried with backoff while a valid token keeps serving, secrets kept out of reprs and
errors; and the headers that say whom a call is for (``dormant_gateway.auth.acting``).

A fake clock and a fake token source make the timing exact; the client-credentials exchange runs against
an ``httpx.MockTransport`` here and against the real dev provider in
``tests/integration/test_gateway_client_credentials.py``."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import httpx
import pytest

from dormant.errors import Unavailable
from dormant_auth import IssuerConfig, TokenVerifier
from dormant_gateway.auth import load_or_create_dev_key
from dormant_gateway.auth.acting import ON_BEHALF_OF, TRIGGER_OWNER, invocation_headers
from dormant_gateway.auth.identity import (
    GATEWAY_SUBJECT,
    ClientCredentials,
    GatewayIdentity,
    IssuedToken,
    TokenFetchError,
    identity_from,
)
from dormant_gateway.config import GatewayConfig

SECRET = "s3cret-do-not-print"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeSource:
    """Issues ``token-1``, ``token-2`` ... with ``lifetime_s``; fails while ``failing``."""

    def __init__(self, lifetime_s: float = 3600.0) -> None:
        self.lifetime_s = lifetime_s
        self.calls = 0
        self.failing = False

    async def fetch(self) -> IssuedToken:
        self.calls += 1
        if self.failing:
            raise TokenFetchError("the token endpoint answered 503 (temporarily_unavailable)")
        return IssuedToken(f"token-{self.calls}", self.lifetime_s)

    async def close(self) -> None:
        return None


async def test_the_token_is_kept_and_replaced_before_it_expires() -> None:
    clock, source = Clock(), FakeSource(lifetime_s=3600)
    identity = GatewayIdentity(source, clock=clock)
    assert await identity.authorization() == "Bearer token-1"
    clock.now += 3600 - 301  # just before the refresh point (300 s ahead of expiry)
    assert await identity.authorization() == "Bearer token-1"
    assert source.calls == 1
    clock.now += 2  # inside the last 300 s: a new token, while the old one is still valid
    assert await identity.authorization() == "Bearer token-2"
    assert source.calls == 2 and identity.fetches == 2


async def test_a_short_lived_token_is_replaced_halfway() -> None:
    clock, source = Clock(), FakeSource(lifetime_s=120)
    identity = GatewayIdentity(source, clock=clock)
    assert await identity.authorization() == "Bearer token-1"
    clock.now += 59
    assert await identity.authorization() == "Bearer token-1"
    clock.now += 2
    assert await identity.authorization() == "Bearer token-2"


async def test_a_failed_refresh_keeps_the_valid_token_and_retries_with_backoff() -> None:
    clock, source = Clock(), FakeSource(lifetime_s=3600)
    identity = GatewayIdentity(source, clock=clock)
    await identity.authorization()
    source.failing = True
    clock.now += 3400  # refresh due, 200 s of validity left
    assert await identity.authorization() == "Bearer token-1"  # refresh failed, the old token serves
    assert source.calls == 2
    clock.now += 0.5  # within the 1 s backoff: the provider is not asked again
    assert await identity.authorization() == "Bearer token-1"
    assert source.calls == 2
    clock.now += 0.6  # backoff over: asked again, fails again, next backoff is 2 s
    assert await identity.authorization() == "Bearer token-1"
    assert source.calls == 3
    clock.now += 1.5
    await identity.authorization()
    assert source.calls == 3
    source.failing = False
    clock.now += 0.6
    assert await identity.authorization() == "Bearer token-4"


async def test_without_a_valid_token_the_call_is_unavailable_and_the_provider_not_hammered() -> None:
    clock, source = Clock(), FakeSource()
    source.failing = True
    identity = GatewayIdentity(source, clock=clock)
    for _ in range(5):
        with pytest.raises(Unavailable) as raised:
            await identity.authorization()
    assert source.calls == 1
    assert "503" in raised.value.message
    source.failing = False
    clock.now += 1.1
    assert await identity.authorization() == "Bearer token-2"


async def test_a_token_about_to_expire_is_not_sent() -> None:
    clock, source = Clock(), FakeSource(lifetime_s=3600)
    identity = GatewayIdentity(source, clock=clock)
    await identity.authorization()
    source.failing = True
    clock.now += 3600 - 5  # 5 s left: a runtime could refuse it on arrival
    with pytest.raises(Unavailable):
        await identity.authorization()


async def test_concurrent_callers_share_one_fetch() -> None:
    release = asyncio.Event()

    class Slow(FakeSource):
        async def fetch(self) -> IssuedToken:
            await release.wait()
            return await super().fetch()

    source = Slow()
    identity = GatewayIdentity(source, clock=Clock())
    waiting = [asyncio.create_task(identity.authorization()) for _ in range(10)]
    await asyncio.sleep(0)
    release.set()
    assert set(await asyncio.gather(*waiting)) == {"Bearer token-1"}
    assert source.calls == 1


def _token_endpoint(answer: httpx.Response, seen: list[httpx.Request]) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200, json={"issuer": "https://idp.test", "token_endpoint": "https://idp.test/token"}
            )
        return answer

    return httpx.MockTransport(handle)


async def test_client_credentials_discovers_the_endpoint_and_authenticates_with_basic_auth() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(200, json={"access_token": "abc", "token_type": "Bearer", "expires_in": 900})
    async with httpx.AsyncClient(transport=_token_endpoint(answer, seen)) as http:
        source = ClientCredentials(
            issuer="https://idp.test", client_id="dormant-gateway", client_secret=SECRET, http=http
        )
        issued = await source.fetch()
        await source.fetch()
    assert issued.access_token == "abc" and issued.lifetime_s == 900
    assert [r.url.path for r in seen] == ["/.well-known/openid-configuration", "/token", "/token"]
    token_request = seen[1]
    assert token_request.method == "POST" and token_request.content == b"grant_type=client_credentials"
    basic = base64.b64encode(f"dormant-gateway:{SECRET}".encode()).decode()
    assert token_request.headers["authorization"] == f"Basic {basic}"
    assert SECRET not in repr(source) and "abc" not in repr(issued)


async def test_a_refused_client_is_an_error_without_the_secret() -> None:
    seen: list[httpx.Request] = []
    answer = httpx.Response(401, json={"error": "invalid_client", "error_description": f"bad {SECRET}"})
    async with httpx.AsyncClient(transport=_token_endpoint(answer, seen)) as http:
        source = ClientCredentials(
            issuer="https://idp.test", client_id="dormant-gateway", client_secret=SECRET, http=http
        )
        identity = GatewayIdentity(source, clock=Clock())
        with pytest.raises(Unavailable) as raised:
            await identity.authorization()
    assert "401" in raised.value.message and "invalid_client" in raised.value.message
    assert SECRET not in str(raised.value.to_payload())


async def test_the_lifetime_falls_back_to_the_jwt_exp() -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"exp": int(time.time()) + 600}).encode()).rstrip(b"=")
    token = f"e30.{claims.decode()}.sig"
    seen: list[httpx.Request] = []
    answer = httpx.Response(200, json={"access_token": token, "token_type": "bearer"})
    async with httpx.AsyncClient(transport=_token_endpoint(answer, seen)) as http:
        source = ClientCredentials(issuer="https://idp.test", client_id="c", client_secret=SECRET, http=http)
        issued = await source.fetch()
    assert 590 <= issued.lifetime_s <= 600


async def test_the_dev_key_token_names_the_gateway_and_holds_no_roles(tmp_path: Path) -> None:
    key = load_or_create_dev_key(tmp_path)
    identity = identity_from(
        dev_key=key,
        issuer="urn:dormant:dev",
        audience="dormant",
        oidc_issuer=None,
        client_id=None,
        client_secret=None,
    )
    assert identity is not None
    verifier = TokenVerifier(
        IssuerConfig(issuer="urn:dormant:dev", audience="dormant", jwks=json.dumps(key.jwks()))
    )
    try:
        user = await verifier.verify(await identity.authorization())
    finally:
        await verifier.close()
    assert user.user_id == GATEWAY_SUBJECT and user.roles == ()


def test_settings_that_cannot_work_together_are_refused(tmp_path: Path) -> None:
    key = load_or_create_dev_key(tmp_path)
    common = {"issuer": "https://idp.test", "audience": "dormant"}
    with pytest.raises(ValueError, match="go together"):
        identity_from(
            dev_key=None, oidc_issuer="https://idp.test", client_id="c", client_secret=None, **common
        )
    with pytest.raises(ValueError, match="dev key"):
        identity_from(dev_key=key, oidc_issuer=None, client_id="c", client_secret=SECRET, **common)
    with pytest.raises(ValueError, match="DORMANT_OIDC_ISSUER"):
        identity_from(dev_key=None, oidc_issuer=None, client_id="c", client_secret=SECRET, **common)
    none = identity_from(
        dev_key=None, oidc_issuer="https://idp.test", client_id=None, client_secret=None, **common
    )
    assert none is None


def test_the_gateway_config_reads_its_client_and_keeps_the_secret_out_of_its_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DORMANT_OIDC_ISSUER", "https://idp.test")
    monkeypatch.setenv("DORMANT_GATEWAY_CLIENT_ID", "dormant-gateway")
    monkeypatch.setenv("DORMANT_GATEWAY_CLIENT_SECRET", SECRET)
    config = GatewayConfig.from_env()
    assert config.gateway_client_id == "dormant-gateway" and config.gateway_client_secret == SECRET
    assert SECRET not in repr(config)
    monkeypatch.setenv("DORMANT_OIDC_ISSUER", "urn:dormant:dev")  # the dev mesh's name for the dev key
    assert GatewayConfig.from_env().dev_auth


def test_invocation_headers_name_whom_the_call_is_for_and_drop_what_the_gateway_sets() -> None:
    stored = {
        "ce-type": "dev.dormant.cron.tick",
        "authorization": "Bearer leaked",
        "X-Dormant-Trigger-Owner": "mallory",
        ON_BEHALF_OF: "mallory",
        "odd": 3,
    }
    tick = invocation_headers(stored, created_by="olga", trigger_id="trg-1")
    assert tick == {"ce-type": "dev.dormant.cron.tick", TRIGGER_OWNER: "olga"}
    asked = invocation_headers(stored, created_by="ann", trigger_id=None)
    assert asked == {"ce-type": "dev.dormant.cron.tick", ON_BEHALF_OF: "ann"}
