"""Per-call authentication in the runtime: the token of a decoded call (native user property or envelope
header) verified into ``ctx.user`` before dispatch, the service's ``auth`` mode and each function's
``roles`` enforced, and the handler run zero times for every refusal. Keys are given inline
(``IssuerConfig.jwks``), so the verifier fetches nothing; real signatures throughout."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from pydantic import BaseModel

from dormant import Context, errors, wire
from dormant.app import AuthMode, FunctionSpec, ServiceSpec
from dormant.context import ANONYMOUS, UserContext
from dormant_auth import IssuerConfig, TokenVerifier
from dormant_runtime.authn import CallAuthenticator
from dormant_runtime.dispatcher import Dispatcher

ISSUER = "https://idp.test"
AUDIENCE = "dormant"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
SCHEMA = {"type": "object"}


class Empty(BaseModel):
    pass


class Counted:
    runs = 0

    async def whoami(self, request: Empty, ctx: Context) -> dict[str, Any]:
        Counted.runs += 1
        return {"user": ctx.user.user_id, "roles": list(ctx.user.roles), "headers": sorted(ctx.headers)}


def spec(auth: AuthMode, roles: tuple[str, ...] = ()) -> ServiceSpec:
    function = FunctionSpec("whoami", "whoami", Empty, Empty, SCHEMA, SCHEMA, 5.0, roles)
    return ServiceSpec("svc", Counted, "sha256:t", {"whoami": function}, auth=auth)


def token(key: Any = KEY, alg: str = "RS256", **over: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": now + 300, "roles": ["reader"]}
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": alg, "kid": "k1"}, claims, key, algorithms=[alg])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned() -> str:
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time()) + 300}
    return f"{b64(json.dumps({'alg': 'none'}).encode())}.{b64(json.dumps(claims).encode())}."


def hs256_with_the_public_key() -> str:
    """Key confusion: an HMAC over the issuer's public key (made by hand: joserfc refuses to)."""
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "exp": int(time.time()) + 300}
    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'kid': 'k1'}).encode())}.{b64(json.dumps(claims).encode())}"
    )
    mac = hmac.new(KEY.as_pem(private=False), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def tampered() -> str:
    head, body, sig = token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))
    claims["sub"] = "mallory"
    return f"{head}.{b64(json.dumps(claims).encode())}.{sig}"


def authenticator(mode: AuthMode) -> CallAuthenticator:
    keys = json.dumps(KeySet([KEY]).as_dict(private=False))
    return CallAuthenticator(mode, TokenVerifier(IssuerConfig(ISSUER, AUDIENCE, jwks=keys)))


async def serve(
    mode: AuthMode, authorization: str | None, *, roles: tuple[str, ...] = ()
) -> tuple[bool, Any]:
    """What a runtime answers: the token verified, the caller admitted, then the handler run."""
    headers = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    if authorization is not None:
        headers[wire.PROP_AUTHORIZATION] = authorization
    call = wire.Call(service="svc", function="whoami", version=1, call_id="c1", params={}, headers=headers)
    dispatcher = Dispatcher(spec(mode, roles), 1)
    try:
        user = await authenticator(mode).user_of(call)
        dispatcher.admit(call.function, user)
    except errors.DormantError as refused:
        return False, refused.to_payload()
    return await dispatcher.dispatch(call, user)


@pytest.fixture(autouse=True)
def _count() -> None:
    Counted.runs = 0


async def test_a_valid_token_fills_ctx_user_and_leaves_the_headers() -> None:
    ok, body = await serve("required", f"Bearer {token()}")
    assert ok and body["user"] == "alice" and body["roles"] == ["reader"]
    assert "authorization" not in body["headers"]  # the token reaches the handler only as ctx.user.token
    assert Counted.runs == 1


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer not-a-jwt",
        "Basic YWxpY2U6c2VjcmV0",
        "expired",
        "not-yet-valid",
        "tampered",
        "wrong-audience",
        "wrong-issuer",
        "unknown-key",
        "alg-none",
        "hs256-public-key",
    ],
)
async def test_every_bad_token_is_unauthenticated_and_runs_nothing(authorization: str | None) -> None:
    now = int(time.time())
    made = {
        "expired": lambda: token(exp=now - 60),
        "not-yet-valid": lambda: token(nbf=now + 600),
        "tampered": tampered,
        "wrong-audience": lambda: token(aud="someone-else"),
        "wrong-issuer": lambda: token(iss="https://evil.test"),
        "unknown-key": lambda: token(OTHER_KEY),
        "alg-none": unsigned,
        "hs256-public-key": hs256_with_the_public_key,
    }
    value = f"Bearer {made[authorization]()}" if authorization in made else authorization
    ok, body = await serve("required", value)
    assert not ok and body["type"] == "Unauthenticated", body
    assert Counted.runs == 0


async def test_a_missing_role_is_forbidden_and_a_held_one_admitted() -> None:
    ok, body = await serve("required", f"Bearer {token()}", roles=("admin", "support"))
    assert not ok and body["type"] == "Forbidden" and body["details"] == {"roles": ["admin", "support"]}
    assert Counted.runs == 0
    ok, body = await serve("required", f"Bearer {token(roles=['support'])}", roles=("admin", "support"))
    assert ok and body["user"] == "alice" and Counted.runs == 1


async def test_optional_admits_anonymous_callers_but_still_refuses_a_bad_token() -> None:
    ok, body = await serve("optional", None)
    assert ok and body["user"] is None
    ok, body = await serve("optional", "Bearer not-a-jwt")
    assert not ok and body["type"] == "Unauthenticated"
    ok, body = await serve("optional", None, roles=("admin",))
    assert not ok and body["type"] == "Unauthenticated"  # a role needs an identity first
    assert Counted.runs == 1


async def test_off_never_reads_the_token() -> None:
    ok, body = await serve("off", "Bearer not-a-jwt")
    assert ok and body["user"] is None and "authorization" not in body["headers"]


async def test_without_a_trusted_issuer_a_token_cannot_be_verified() -> None:
    call = wire.Call(
        service="svc",
        function="whoami",
        version=1,
        call_id="c1",
        params={},
        headers={"authorization": "Bearer x"},
    )
    with pytest.raises(errors.Unauthenticated, match="no identity provider"):
        await CallAuthenticator("required", None).user_of(call)


async def test_an_anonymous_caller_of_a_required_service_learns_no_function_names() -> None:
    dispatcher = Dispatcher(spec("required"), 1)
    with pytest.raises(errors.Unauthenticated):
        dispatcher.admit("noSuchFunction", ANONYMOUS)
    with pytest.raises(errors.NotFound):
        dispatcher.admit("noSuchFunction", UserContext(user_id="alice"))
