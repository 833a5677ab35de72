"""Conformance: who is calling (docs/security.md, docs/wire-protocol.md), against a real OIDC provider.

Each runtime serves the identity conformance service (``conformance-secure``: authentication required,
``adminOnly`` needs the ``admin`` role) on the suite's broker, trusting a real provider (nanoidp, from
``dormant_local.oidc``) through the ``DORMANT_OIDC_*`` variables, as a deployed runtime does. Every bad
token is refused the same way by every runtime: ``Unauthenticated`` with the same details, the handler
never runs, and the answer never echoes the token. The tokens that are wrong in one claim only are signed
with the provider's own key (read from its state directory), so the claim is what gets them refused; a
re-signed token with unchanged claims is accepted, which shows the re-signing itself is sound.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from joserfc import jwt
from joserfc.jwk import RSAKey

from dormant_local.oidc import OidcProvider

from .conftest import Stack
from .harness import (
    SECURE_RUNTIMES,
    SECURE_SERVICE,
    Caller,
    Received,
    RuntimeKind,
    RuntimeProcess,
    expect_error,
    expect_error_body,
    expect_ok,
    new_call_id,
)

USER = "alice"
ADMIN = "root"
READY_TIMEOUT_S = 90.0


def _topic(function: str | None = None) -> str:
    return f"service/{SECURE_SERVICE}" if function is None else f"service/{SECURE_SERVICE}/{function}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


# --------------------------------------------------------------------------- provider and tokens


@pytest_asyncio.fixture(scope="module")
async def provider(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OidcProvider]:
    idp = OidcProvider(Path(tmp_path_factory.mktemp("identity-oidc")))
    await idp.start()
    try:
        yield idp
    finally:
        await idp.stop()


@pytest_asyncio.fixture(scope="module")
async def tokens(provider: OidcProvider) -> dict[str, str]:
    """Every token the module sends, by name: real ones from the provider, and forged ones."""
    user = await provider.token(USER, ("viewer",), groups=("eng",))
    admin = await provider.token(ADMIN, ("admin",))
    keys = provider.state_dir / "keys"
    real_key = RSAKey.import_key((keys / "rsa_private.pem").read_bytes())
    kid = json.loads(base64.urlsafe_b64decode(user.split(".")[0] + "==="))["kid"]
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    claims = _claims_of(user)
    now = int(time.time())

    def signed(key: RSAKey, **changes: Any) -> str:
        return jwt.encode(header, {**claims, **changes}, key)

    return {
        "user": user,
        "admin": admin,
        "resigned": signed(real_key, jti=str(uuid.uuid4())),
        "foreign-key": signed(RSAKey.generate_key(2048), jti=str(uuid.uuid4())),
        "expired": signed(real_key, iat=now - 7200, nbf=now - 7200, exp=now - 3600),
        "wrong-issuer": signed(real_key, iss="http://127.0.0.1:9/not-the-issuer"),
        "wrong-audience": signed(real_key, aud="not-dormant"),
        "issued-in-the-future": signed(real_key, iat=now + 3600),
        "subject-a-number": signed(real_key, sub=12345),
        "subject-empty": signed(real_key, sub=""),
        "audience-not-strings": signed(real_key, aud=["dormant", 5]),
        "alg-none": f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}."
        f"{_b64(json.dumps({**claims, 'jti': str(uuid.uuid4())}).encode())}.",
        "garbage": "not-a-token-" + uuid.uuid4().hex,
    }


# --------------------------------------------------------------------------- the runtime under test


@pytest.fixture(scope="module")
def secure_kind(runtime_kind: RuntimeKind) -> RuntimeKind:
    kind = SECURE_RUNTIMES[runtime_kind.name]
    reason = kind.missing()
    if reason is not None:
        pytest.fail(f"{reason}; run deploy/bootstrap.sh", pytrace=False)
    return kind


@pytest.fixture(scope="module")
def secure_runtime(
    secure_kind: RuntimeKind,
    stack: Stack,
    caller: Caller,
    provider: OidcProvider,
    tokens: dict[str, str],
) -> Iterator[RuntimeProcess]:
    """The runtime serving ``conformance-secure``, trusting the provider, answering a token's call."""
    process = RuntimeProcess(
        secure_kind,
        broker_url=stack.broker.url,
        catalog_url=stack.catalog_url,
        log_file=stack.work / f"{secure_kind.name}-secure-runtime.log",
    )
    process.start(extra_env=provider.service_env())
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            code = process.exited()
            if code is not None:
                raise RuntimeError(f"the runtime exited with {code} before serving:\n{process.log_tail()}")
            try:
                answer = _call(caller, "runs", {"key": "ready"}, f"Bearer {tokens['user']}", timeout=0.5)
            except AssertionError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the runtime did not answer:\n{process.log_tail()}") from None
                continue
            assert answer.status == "ok", answer.payload
            break
        yield process
    finally:
        process.stop()


pytestmark = pytest.mark.usefixtures("secure_runtime")


def _call(
    caller: Caller,
    function: str,
    payload: dict[str, Any],
    authorization: str | None,
    *,
    correlation: bytes | None = None,
    timeout: float = 15.0,
) -> Received:
    props = [] if authorization is None else [("authorization", authorization)]
    return caller.call(
        _topic(function), payload, correlation=correlation, user_properties=props, timeout=timeout
    )


def _runs(caller: Caller, tokens: dict[str, str], key: str) -> int:
    """How many times ``whoami``/``adminOnly`` ran for ``key`` (asked with a valid token)."""
    correlation = new_call_id()
    answer = _call(caller, "runs", {"key": key}, f"Bearer {tokens['user']}", correlation=correlation)
    runs = expect_ok(answer, correlation)
    assert runs["key"] == key
    return int(runs["runs"])


def _assert_no_token(answer: Received, token: str) -> None:
    secret = token.rsplit(".", 1)[-1] or token  # the signature, or the whole opaque/unsigned token
    assert token not in answer.payload.decode(errors="replace")
    assert secret not in answer.payload.decode(errors="replace")
    assert all(token not in value and secret not in value for _, value in answer.user_properties)


# --------------------------------------------------------------------------- the service pair


SECURE_SCHEMAS = "schemas/conformance-secure.json"


def test_each_secure_service_carries_the_same_schemas(secure_kind: RuntimeKind) -> None:
    original = SECURE_RUNTIMES["python"].app_dir / SECURE_SCHEMAS
    assert (secure_kind.app_dir / SECURE_SCHEMAS).read_bytes() == original.read_bytes()


# --------------------------------------------------------------------------- refused


UNAUTHENTICATED_DETAILS: Any = None
"""What every ``Unauthenticated`` answer carries as ``details`` (the Python runtime is the reference)."""


@pytest.mark.parametrize("function", ["whoami", "adminOnly", "nosuch"])
def test_a_call_without_a_token_is_unauthenticated(
    caller: Caller, tokens: dict[str, str], function: str
) -> None:
    """Authentication comes first: an anonymous caller learns nothing, not even which functions exist."""
    key = f"anon-{function}-{uuid.uuid4().hex[:8]}"
    correlation = new_call_id()
    answer = _call(caller, function, {"key": key}, None, correlation=correlation)
    expect_error(answer, "Unauthenticated", correlation, details=UNAUTHENTICATED_DETAILS)
    assert _runs(caller, tokens, key) == 0


BAD_TOKENS = [
    "garbage",
    "foreign-key",
    "expired",
    "wrong-issuer",
    "wrong-audience",
    "alg-none",
    # Refused by the Python runtime's claims checks (joserfc) but once accepted by `jose` as it is:
    "issued-in-the-future",
    "subject-a-number",
    "subject-empty",
    "audience-not-strings",
]


@pytest.mark.parametrize("name", BAD_TOKENS)
@pytest.mark.parametrize("function", ["whoami", "adminOnly"])
def test_a_bad_token_is_unauthenticated_and_never_reaches_the_handler(
    caller: Caller, tokens: dict[str, str], name: str, function: str
) -> None:
    token = tokens[name]
    key = f"bad-{name}-{function}-{uuid.uuid4().hex[:8]}"
    correlation = new_call_id()
    answer = _call(caller, function, {"key": key}, f"Bearer {token}", correlation=correlation)
    expect_error(answer, "Unauthenticated", correlation, details=UNAUTHENTICATED_DETAILS)
    _assert_no_token(answer, token)
    assert _runs(caller, tokens, key) == 0


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Basic dXNlcjpwYXNz", "Bearer two parts", "{token}"],
    ids=["bearer-alone", "basic", "two-parts", "no-scheme"],
)
def test_an_authorization_that_is_not_bearer_token_is_unauthenticated(
    caller: Caller, tokens: dict[str, str], authorization: str
) -> None:
    value = authorization.format(token=tokens["user"])
    key = f"shape-{uuid.uuid4().hex[:8]}"
    correlation = new_call_id()
    answer = _call(caller, "whoami", {"key": key}, value, correlation=correlation)
    expect_error(answer, "Unauthenticated", correlation, details=UNAUTHENTICATED_DETAILS)
    _assert_no_token(answer, tokens["user"])
    assert _runs(caller, tokens, key) == 0


def test_a_caller_without_the_role_is_forbidden(caller: Caller, tokens: dict[str, str]) -> None:
    key = f"forbidden-{uuid.uuid4().hex[:8]}"
    correlation = new_call_id()
    answer = _call(caller, "adminOnly", {"key": key}, f"Bearer {tokens['user']}", correlation=correlation)
    expect_error(answer, "Forbidden", correlation, details={"roles": ["admin"]})
    _assert_no_token(answer, tokens["user"])
    assert _runs(caller, tokens, key) == 0


# --------------------------------------------------------------------------- admitted


def test_a_valid_token_is_the_caller(caller: Caller, tokens: dict[str, str]) -> None:
    key = f"whoami-{uuid.uuid4().hex[:8]}"
    correlation = new_call_id()
    answer = _call(caller, "whoami", {"key": key}, f"Bearer {tokens['user']}", correlation=correlation)
    assert expect_ok(answer, correlation) == {
        "subject": USER,
        "email": f"{USER}@example.com",
        "roles": ["viewer"],
        "groups": ["eng"],
        "anonymous": False,
    }
    _assert_no_token(answer, tokens["user"])
    assert _runs(caller, tokens, key) == 1


def test_the_scheme_is_case_insensitive(caller: Caller, tokens: dict[str, str]) -> None:
    correlation = new_call_id()
    answer = _call(caller, "whoami", {}, f"bearer {tokens['user']}", correlation=correlation)
    assert expect_ok(answer, correlation)["subject"] == USER


def test_a_token_resigned_with_the_providers_key_is_accepted(caller: Caller, tokens: dict[str, str]) -> None:
    """The control for the forged tokens: re-signing alone does not get a token refused."""
    correlation = new_call_id()
    answer = _call(caller, "whoami", {}, f"Bearer {tokens['resigned']}", correlation=correlation)
    assert expect_ok(answer, correlation)["subject"] == USER


def test_a_caller_with_the_role_is_admitted(caller: Caller, tokens: dict[str, str]) -> None:
    key = f"admin-{uuid.uuid4().hex[:8]}"
    correlation = new_call_id()
    answer = _call(caller, "adminOnly", {"key": key}, f"Bearer {tokens['admin']}", correlation=correlation)
    assert expect_ok(answer, correlation) == {"ok": True}
    assert _runs(caller, tokens, key) == 1
    answer = _call(caller, "whoami", {}, f"Bearer {tokens['admin']}", correlation=correlation)
    assert expect_ok(answer, correlation)["roles"] == ["admin"]


# --------------------------------------------------------------------------- envelope form


def _envelope(reply: str, function: str, parameters: dict[str, Any], authorization: str) -> dict[str, Any]:
    return {
        "messageId": f"msg-{uuid.uuid4().hex[:8]}",
        "callId": f"env-{uuid.uuid4().hex}",
        "replyTo": reply,
        "headers": {"content-type": "application/json", "authorization": authorization},
        "body": {"function": function, "parameters": parameters},
    }


def _envelope_answer(caller: Caller, request: dict[str, Any], status: str) -> Any:
    caller.publish(_topic(), request)
    raw = caller.wait_for(request["replyTo"])
    assert raw.statuses == [status], raw.user_properties
    answer = raw.json()
    assert answer["callId"] == request["callId"] and answer["inReplyTo"] == request["messageId"]
    assert answer["headers"] == {"content-type": "application/json", "status": status}
    return answer["body"], raw


def test_an_envelope_token_is_the_caller(caller: Caller, tokens: dict[str, str]) -> None:
    request = _envelope(caller.new_reply_topic(), "whoami", {}, f"Bearer {tokens['user']}")
    body, raw = _envelope_answer(caller, request, "ok")
    assert body["subject"] == USER and body["roles"] == ["viewer"]
    _assert_no_token(raw, tokens["user"])


def test_an_envelope_with_a_bad_token_is_unauthenticated(caller: Caller, tokens: dict[str, str]) -> None:
    key = f"env-bad-{uuid.uuid4().hex[:8]}"
    request = _envelope(caller.new_reply_topic(), "whoami", {"key": key}, f"Bearer {tokens['expired']}")
    body, raw = _envelope_answer(caller, request, "error")
    expect_error_body(body, "Unauthenticated", details=UNAUTHENTICATED_DETAILS)
    _assert_no_token(raw, tokens["expired"])
    assert _runs(caller, tokens, key) == 0


# --------------------------------------------------------------------------- last: the log


def test_the_runtime_never_logs_a_token(secure_runtime: RuntimeProcess, tokens: dict[str, str]) -> None:
    """Runs last in the module: every token above has been sent by now."""
    log = secure_runtime.log_text()
    assert log, "the runtime wrote no log at all"
    for name, token in tokens.items():
        secret = token.rsplit(".", 1)[-1] or token
        assert secret not in log, f"the {name} token is in the runtime's log"
