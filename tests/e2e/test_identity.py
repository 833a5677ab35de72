"""Per-call authentication end to end, with the real identity provider (nanoidp) and a real pod.

One pod serves ``secure-service`` and trusts only the provider (its key set discovered over HTTP, not
given inline). A valid token fills ``ctx.user``; every bad token is ``Unauthenticated``; a missing role
is ``Forbidden``; and the service's ``runs`` function shows its handlers ran exactly once per admitted
call and never for a refused one. A key rotation at the provider needs no restart of the pod.

The bad tokens are as close to good as each case allows: the expired one is issued by the provider
itself (its management API takes a negative lifetime); the not-yet-valid, wrong-audience and
wrong-issuer ones carry the claims of a token the provider issued, changed in that one claim, and are
signed with the provider's own private key (from its state directory), so the runtime refuses them for
that claim alone (a control re-signs the claims unchanged and is admitted).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from joserfc import jwt
from joserfc.jwk import RSAKey

from dormant import Client, Forbidden, NotFound, Unauthenticated
from dormant_local import MosquittoProcess
from dormant_local.oidc import CLI_CLIENT, OidcProvider

from .identity import DevIdentity
from .mesh import ROOT, Mesh, running_mesh

SECURE = ROOT / "tests" / "fixtures" / "services" / "secure-service"
SERVICE = "secure-service"
POD = "pod-secure"
ROTATION_DEADLINE_S = 30.0
"""The runtime refetches the key set on an unknown key id at most every 10 s (``min_refresh_s``)."""


# --- tokens ---------------------------------------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(part: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The header, the claims and the signature (as sent) of a compact JWT."""
    head, body, signature = token.split(".")
    return unb64(head), unb64(body), signature


def provider_key(provider: OidcProvider) -> RSAKey:
    """The provider's current signing key, read from its state directory (nanoidp keeps it on disk)."""
    keys = provider.state_dir / "keys"
    kid = (keys / "kid.txt").read_text().strip()
    return RSAKey.import_key((keys / "rsa_private.pem").read_bytes(), parameters={"kid": kid})


def signed(key: RSAKey, claims: dict[str, Any]) -> str:
    return jwt.encode({"alg": "RS256", "typ": "JWT", "kid": key.kid}, claims, key, algorithms=["RS256"])


def resigned(provider: OidcProvider, token: str, **changed: Any) -> str:
    """``token``'s claims with ``changed`` applied, signed again with the provider's own key."""
    _, claims, _ = parts(token)
    claims.update(changed)
    return signed(provider_key(provider), claims)


def tampered(token: str, **changed: Any) -> str:
    """``token`` with ``changed`` claims and its original signature."""
    head, body, signature = token.split(".")
    claims = unb64(body)
    claims.update(changed)
    return f"{head}.{b64(json.dumps(claims).encode())}.{signature}"


def unknown_key(token: str) -> str:
    """The same claims and key id, signed by a key the provider never had."""
    header, claims, _ = parts(token)
    stranger = RSAKey.generate_key(2048, parameters={"kid": header["kid"]})
    return signed(stranger, claims)


def alg_none(token: str) -> str:
    header, claims, _ = parts(token)
    unsigned = {"alg": "none", "typ": "JWT", "kid": header["kid"]}
    return f"{b64(json.dumps(unsigned).encode())}.{b64(json.dumps(claims).encode())}."


def hs256_keyed_with_the_public_key(provider: OidcProvider, token: str) -> str:
    """Key confusion: an HMAC keyed with the provider's public key PEM (made by hand: joserfc refuses)."""
    header, claims, _ = parts(token)
    public_pem = (provider.state_dir / "keys" / "rsa_public.pem").read_bytes()
    confused = {"alg": "HS256", "typ": "JWT", "kid": header["kid"]}
    signing_input = f"{b64(json.dumps(confused).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


async def expired_from_the_provider(provider: OidcProvider, user: str) -> str:
    """A token the provider issues already expired (``user`` must exist: ``provider.token`` made it)."""
    async with httpx.AsyncClient(base_url=provider.issuer, timeout=10.0) as http:
        minted = await http.post(
            f"/api/users/{user}/token",
            headers={"X-Management-Secret": provider.secrets.management},
            json={"exp_minutes": -5, "client_id": CLI_CLIENT},
        )
        minted.raise_for_status()
        return str(minted.json()["access_token"])


# --- the mesh -------------------------------------------------------------------------------------


class ProviderTrust(DevIdentity):
    """Pods trust the provider instead of the harness's dev key. (Through ``trust_env`` rather than
    ``start_pod(extra_env=...)``: ``Mesh.start_pod`` passes both as keyword arguments of one call, so
    an extra variable that ``trust_env`` also sets is a TypeError.)"""

    def __init__(self, state_dir: Path, provider: OidcProvider) -> None:
        super().__init__(state_dir)
        self.provider = provider

    def trust_env(self) -> dict[str, str]:
        # No inline key set (empty means none): the runtime discovers the provider's keys over HTTP,
        # and refetches them after a rotation.
        return {**self.provider.service_env(), "DORMANT_OIDC_JWKS": ""}


@pytest_asyncio.fixture(scope="module")
async def provider(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OidcProvider]:
    idp = OidcProvider(Path(tmp_path_factory.mktemp("identity-oidc")))
    await idp.start()
    try:
        yield idp
    finally:
        await idp.stop()


@pytest_asyncio.fixture(scope="module")
async def secured(
    broker: MosquittoProcess, pg: Any, provider: OidcProvider, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    """``secure-service`` on one pod with one replica, trusting the provider alone."""
    name = f"dormant_e2e_{uuid.uuid4().hex[:12]}"
    catalog_url = await pg.create_database(name)
    try:
        with running_mesh(broker.url, catalog_url, tmp_path_factory.mktemp("identity")) as mesh:
            service, version = await mesh.publish(SECURE)
            await mesh.deploy(service, version, replicas=1)
            mesh.identity = ProviderTrust(mesh.work_root.parent / "state", provider)
            mesh.start_pod(POD)
            await mesh.wait_serving(SERVICE)
            yield mesh
    finally:
        await pg.drop_database(name)


@pytest_asyncio.fixture(scope="module")
async def alice(provider: OidcProvider) -> str:
    return await provider.token("alice", ("reader", "editor"), email="alice@corp.test", groups=("eng",))


async def call(mesh: Mesh, token: str | None, function: str = "whoami") -> Any:
    """``function`` of the service as the holder of ``token`` (None: no authorization at all)."""
    return await call_as(mesh, "" if token is None else f"Bearer {token}", function)


async def call_as(mesh: Mesh, authorization: str, function: str = "whoami") -> Any:
    """``function`` of the service with this ``authorization`` value ("": none)."""
    async with Client(mesh.broker_url, authorization=authorization, timeout=10) as client:
        return await client.call(SERVICE, function, {})


async def runs(mesh: Mesh, reader: str) -> dict[str, int]:
    """How often each counted handler ran in the serving process (``runs`` itself is not counted)."""
    counted: dict[str, int] = await call(mesh, reader, "runs")
    return counted


# --- admitted -------------------------------------------------------------------------------------


async def test_a_valid_token_fills_ctx_user(secured: Mesh, alice: str) -> None:
    before = await runs(secured, alice)
    identity = await call(secured, alice)
    assert identity == {
        "userId": "alice",
        "email": "alice@corp.test",
        "roles": ["reader", "editor"],
        "groups": ["eng"],
    }
    assert alice not in json.dumps(identity)
    after = await runs(secured, alice)
    assert after == {**before, "whoami": before["whoami"] + 1}


async def test_the_provider_key_resigning_an_unchanged_token_is_admitted(
    secured: Mesh, provider: OidcProvider, alice: str
) -> None:
    """The control for the resigned cases below: only the claim each one changes can refuse them."""
    identity = await call(secured, resigned(provider, alice))
    assert identity["userId"] == "alice"


# --- refused: the handler never runs --------------------------------------------------------------

BadToken = Callable[[OidcProvider, str], str]

BAD_TOKENS: dict[str, BadToken] = {
    "not-yet-valid": lambda idp, good: resigned(idp, good, nbf=int(time.time()) + 600),
    "wrong-audience": lambda idp, good: resigned(idp, good, aud="someone-else"),
    "wrong-issuer": lambda idp, good: resigned(idp, good, iss="http://127.0.0.1:1/evil"),
    "tampered": lambda idp, good: tampered(good, sub="mallory"),
    "unknown-key": lambda idp, good: unknown_key(good),
    "alg-none": lambda idp, good: alg_none(good),
    "hs256-keyed-with-the-public-key": hs256_keyed_with_the_public_key,
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_a_bad_token_is_unauthenticated_and_runs_nothing(
    secured: Mesh, provider: OidcProvider, alice: str, case: str
) -> None:
    bad = BAD_TOKENS[case](provider, alice)
    before = await runs(secured, alice)
    for function in ("whoami", "supportOnly"):
        with pytest.raises(Unauthenticated):
            await call(secured, bad, function)
    assert await runs(secured, alice) == before


async def test_an_expired_token_from_the_provider_is_unauthenticated(
    secured: Mesh, provider: OidcProvider, alice: str
) -> None:
    expired = await expired_from_the_provider(provider, "alice")
    _, claims, _ = parts(expired)
    assert claims["exp"] < time.time() - 60 and claims["iss"] == provider.issuer
    before = await runs(secured, alice)
    with pytest.raises(Unauthenticated, match="expired"):
        await call(secured, expired)
    assert await runs(secured, alice) == before


@pytest.mark.parametrize("authorization", ["", "Bearer not-a-jwt", "Bearer a.b.c", "Basic YWxpY2U6c2VjcmV0"])
async def test_no_token_or_no_jwt_is_unauthenticated_and_runs_nothing(
    secured: Mesh, alice: str, authorization: str
) -> None:
    before = await runs(secured, alice)
    with pytest.raises(Unauthenticated):
        await call_as(secured, authorization)
    assert await runs(secured, alice) == before


async def test_a_tampered_role_does_not_open_a_role_guarded_function(
    secured: Mesh, provider: OidcProvider, alice: str
) -> None:
    before = await runs(secured, alice)
    with pytest.raises(Unauthenticated):
        await call(secured, tampered(alice, roles=["support"]), "supportOnly")
    assert await runs(secured, alice) == before


async def test_an_anonymous_caller_learns_no_function_names(secured: Mesh, alice: str) -> None:
    with pytest.raises(Unauthenticated):
        await call(secured, None, "noSuchFunction")
    with pytest.raises(NotFound):
        await call(secured, alice, "noSuchFunction")


# --- roles ----------------------------------------------------------------------------------------


async def test_a_missing_role_is_forbidden_and_a_held_one_admitted(
    secured: Mesh, provider: OidcProvider, alice: str
) -> None:
    before = await runs(secured, alice)
    with pytest.raises(Forbidden) as refused:
        await call(secured, alice, "supportOnly")
    assert refused.value.details == {"roles": ["support"]}
    assert await runs(secured, alice) == before

    sam = await provider.token("sam", ("support",), groups=("helpdesk", "eng"))
    identity = await call(secured, sam, "supportOnly")
    assert identity == {
        "userId": "sam",
        "email": "sam@example.com",
        "roles": ["support"],
        "groups": ["helpdesk", "eng"],
    }
    assert await runs(secured, alice) == {**before, "supportOnly": before["supportOnly"] + 1}


# --- key rotation (last: it leaves the provider signing with a new key) ---------------------------


async def test_a_key_rotation_needs_no_restart(secured: Mesh, provider: OidcProvider, alice: str) -> None:
    before = await runs(secured, alice)
    old_kid = parts(alice)[0]["kid"]
    # Issued under the old key, first shown after the rotation: it verifies only if the key set the
    # runtime refetches still holds the previous key (nanoidp keeps two), not from a cache of tokens.
    unshown_old = await provider.token("olga", ("reader",))
    assert parts(unshown_old)[0]["kid"] == old_kid

    new_kid = await provider.rotate_keys()
    assert new_kid != old_kid
    fresh = await provider.token("nina", ("reader",))
    assert parts(fresh)[0]["kid"] == new_kid

    loop = asyncio.get_running_loop()
    deadline = loop.time() + ROTATION_DEADLINE_S
    while True:
        try:
            identity = await call(secured, fresh)
            break
        except Unauthenticated:
            # Until the runtime's next allowed refetch of the key set (at most every 10 s).
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)
    assert identity["userId"] == "nina"
    assert (await call(secured, unshown_old))["userId"] == "olga"
    after = await runs(secured, alice)
    assert after["pid"] == before["pid"]  # the same runtime process: nothing restarted
    assert secured.pods[POD].poll() is None
    assert after["whoami"] == before["whoami"] + 2  # the refused attempts ran nothing


async def test_no_token_reaches_the_pod_log(secured: Mesh, alice: str) -> None:
    """Every call above was logged as served or refused; none of them with its token."""
    log = secured.pod_log(POD)
    assert "refused call of whoami" in log  # the refusals are there to read
    assert parts(alice)[2] not in log and alice.split(".")[1] not in log
