"""``dormant_auth.TokenVerifier`` against an in-process issuer (an httpx MockTransport serving the
discovery document, the JWKS and introspection). The same rules against the real provider are in
tests/integration (the dev mesh's OIDC provider)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey, RSAKey

from dormant.errors import Unauthenticated, Unavailable
from dormant_auth import IssuerConfig, TokenVerifier, bearer_token

ISSUER = "https://idp.test"
AUDIENCE = "dormant"


class Issuer:
    """Signs tokens and serves its keys; ``down`` makes every endpoint fail."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1"})]
        self.down = False
        self.jwks_fetches = 0
        self.active: dict[str, dict[str, Any]] = {}

    def rotate(self, kid: str) -> None:
        self.keys.append(ECKey.generate_key("P-256", parameters={"kid": kid}))

    def sign(
        self, claims: dict[str, Any] | None = None, *, key: Any = None, alg: str = "RS256", **over: Any
    ) -> str:
        now = int(time.time())
        body = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "alice",
            "exp": now + 300,
            "iat": now,
            "email": "alice@example.com",
            "roles": ["admin"],
            "groups": ["eng"],
        }
        body.update(claims or {})
        body.update(over)
        body = {k: v for k, v in body.items() if v is not None}
        signing = key or self.keys[-1]
        return jwt.encode({"alg": alg, "kid": signing.kid}, body, signing, algorithms=[alg])

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503)
        if request.url.path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "jwks_uri": f"{ISSUER}/jwks",
                    "introspection_endpoint": f"{ISSUER}/introspect",
                },
            )
        if request.url.path == "/jwks":
            self.jwks_fetches += 1
            return httpx.Response(200, json=KeySet(self.keys).as_dict(private=False))
        if request.url.path == "/introspect":
            token = dict(httpx.QueryParams(request.content.decode()))["token"]
            return httpx.Response(200, json=self.active.get(token, {"active": False}))
        return httpx.Response(404)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


def verifier_for(issuer: Issuer, **config: Any) -> TokenVerifier:
    http = httpx.AsyncClient(transport=httpx.MockTransport(issuer.handler))
    settings: dict[str, Any] = {"issuer": ISSUER, "audience": AUDIENCE, "min_refresh_s": 0.0}
    settings.update(config)
    return TokenVerifier(IssuerConfig(**settings), http=http)


async def test_a_valid_token_becomes_the_user(issuer: Issuer) -> None:
    token = issuer.sign()
    user = await verifier_for(issuer).verify(f"Bearer {token}")
    assert (user.user_id, user.email, user.roles, user.groups) == (
        "alice",
        "alice@example.com",
        ("admin",),
        ("eng",),
    )
    assert user.token == token and token not in repr(user)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _refused_tokens(issuer: Issuer) -> dict[str, str]:
    now = int(time.time())
    good = issuer.sign()
    head, body, sig = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    public = issuer.keys[0].as_dict(private=False)
    # Key confusion: an HMAC keyed with the issuer's public key (as text), which a naive verifier
    # that lets the token choose its algorithm would accept.
    confused = OctKey.import_key(json.dumps(public).encode())
    return {
        "expired": issuer.sign(exp=now - 60),
        "not yet valid": issuer.sign(nbf=now + 600),
        "tampered": ".".join((head, _b64({**claims, "sub": "mallory"}), sig)),
        "wrong audience": issuer.sign(aud="someone-else"),
        "wrong issuer": issuer.sign(iss="https://evil.test"),
        "no expiry": issuer.sign(exp=None),
        # Signed by the issuer, but claims a careless issuer could write: each refused, none reaching
        # a generic exception (float(10**400) raises OverflowError).
        "expiry beyond a float": issuer.sign(exp=10**400),
        "expiry as a boolean": issuer.sign(exp=True),
        "expiry as text": issuer.sign(exp=str(now + 600)),
        "unknown key": issuer.sign(key=RSAKey.generate_key(2048, parameters={"kid": "k-evil"})),
        "alg none": f"{_b64({'alg': 'none', 'kid': 'k1'})}.{body}.",
        "HS256 with the public key": jwt.encode(
            {"alg": "HS256", "kid": "k1"}, claims, confused, algorithms=["HS256"]
        ),
        "garbage": "not-a-jwt",
        "three dots of garbage": "a.b.c",
    }


async def test_every_bad_token_is_unauthenticated(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    for name, token in _refused_tokens(issuer).items():
        with pytest.raises(Unauthenticated):
            await verifier.verify(f"Bearer {token}")
            pytest.fail(f"{name} was accepted")


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Bearer a b", "token-without-scheme"])
def test_an_authorization_that_is_not_bearer_is_refused(value: str) -> None:
    with pytest.raises(Unauthenticated):
        bearer_token(value)


def test_no_authorization_is_no_token() -> None:
    assert bearer_token(None) is None and bearer_token("  ") is None


async def test_a_repeated_token_is_not_verified_again_and_keys_are_fetched_once(issuer: Issuer) -> None:
    verifier = verifier_for(issuer)
    token = issuer.sign()
    first = await verifier.verify(f"Bearer {token}")
    issuer.keys = []  # were the signature checked again, this would now fail
    assert await verifier.verify(f"bearer {token}") is first
    assert issuer.jwks_fetches == 1


async def test_key_rotation_needs_no_restart_and_refreshes_are_bounded(issuer: Issuer) -> None:
    verifier = verifier_for(issuer, min_refresh_s=3600.0)
    await verifier.verify(f"Bearer {issuer.sign()}")
    # Forged kids do not make the verifier refetch more than once per min_refresh_s.
    for n in range(5):
        with pytest.raises(Unauthenticated):
            await verifier.verify(
                f"Bearer {issuer.sign(key=RSAKey.generate_key(2048, parameters={'kid': f'x{n}'}))}"
            )
    assert issuer.jwks_fetches == 1  # the first fetch was less than min_refresh_s ago
    fresh = verifier_for(issuer, min_refresh_s=0.0)
    await fresh.verify(f"Bearer {issuer.sign()}")
    issuer.rotate("k2")
    user = await fresh.verify(f"Bearer {issuer.sign(alg='ES256')}")
    assert user.user_id == "alice"


async def test_cached_keys_serve_while_the_issuer_is_down(issuer: Issuer) -> None:
    verifier = verifier_for(issuer, max_key_age_s=0.0)  # every call wants a refresh
    await verifier.verify(f"Bearer {issuer.sign(sub='a')}")
    issuer.down = True
    user = await verifier.verify(f"Bearer {issuer.sign(sub='b')}")
    assert user.user_id == "b"


async def test_an_issuer_never_reached_is_unavailable_not_unauthenticated(issuer: Issuer) -> None:
    issuer.down = True
    with pytest.raises(Unavailable):
        await verifier_for(issuer).verify(f"Bearer {issuer.sign()}")


async def test_opaque_tokens_are_introspected_and_cached(issuer: Issuer) -> None:
    verifier = verifier_for(issuer, introspection_client_id="gw", introspection_client_secret="s3cret")
    issuer.active["opaque-1"] = {
        "active": True,
        "sub": "bob",
        "aud": AUDIENCE,
        "exp": int(time.time()) + 60,
        "roles": "viewer editor",
    }
    user = await verifier.verify("Bearer opaque-1")
    assert user.user_id == "bob" and user.roles == ("viewer", "editor")
    del issuer.active["opaque-1"]
    assert (await verifier.verify("Bearer opaque-1")).user_id == "bob"  # cached until it expires
    with pytest.raises(Unauthenticated):
        await verifier.verify("Bearer opaque-2")


async def test_opaque_tokens_without_introspection_are_refused(issuer: Issuer) -> None:
    with pytest.raises(Unauthenticated, match="opaque"):
        await verifier_for(issuer).verify("Bearer opaque-1")
