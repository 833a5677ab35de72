"""The dev identity provider (nanoidp, ``dormant_local.oidc``) and ``dormant_auth`` against it: real
discovery, JWKS, user tokens with roles, and key rotation with no restart of the verifier."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dormant.errors import Unauthenticated
from dormant_auth import IssuerConfig, TokenVerifier
from dormant_local.oidc import OidcProvider, OidcProviderNotInstalled


@pytest_asyncio.fixture(scope="module")
async def provider(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OidcProvider]:
    idp = OidcProvider(Path(tmp_path_factory.mktemp("oidc")))
    await idp.start()
    try:
        yield idp
    finally:
        await idp.stop()


def verifier(idp: OidcProvider) -> TokenVerifier:
    config = IssuerConfig.from_env(idp.service_env())
    assert config is not None
    return TokenVerifier(config)


async def test_a_user_token_from_the_provider_becomes_the_user(provider: OidcProvider) -> None:
    check = verifier(provider)
    try:
        token = await provider.token("alice", ("admin", "editor"), groups=("eng",))
        user = await check.verify(f"Bearer {token}")
    finally:
        await check.close()
    assert user.user_id == "alice" and user.email == "alice@example.com"
    assert user.roles == ("admin", "editor") and user.groups == ("eng",)


async def test_rotated_keys_verify_without_restarting_the_verifier(provider: OidcProvider) -> None:
    check = TokenVerifier(
        IssuerConfig(issuer=provider.issuer, audience="dormant", min_refresh_s=0.0),
    )
    try:
        await check.verify(f"Bearer {await provider.token('bob', ('viewer',))}")
        await provider.rotate_keys()
        user = await check.verify(f"Bearer {await provider.token('carol', ('viewer',))}")
        assert user.user_id == "carol"
    finally:
        await check.close()


async def test_a_token_of_another_audience_is_refused(provider: OidcProvider) -> None:
    check = TokenVerifier(IssuerConfig(issuer=provider.issuer, audience="not-dormant"))
    try:
        with pytest.raises(Unauthenticated):
            await check.verify(f"Bearer {await provider.token('dave')}")
    finally:
        await check.close()


async def test_the_provider_keeps_its_issuer_and_keys_across_a_restart(provider: OidcProvider) -> None:
    token = await provider.token("erin", ("viewer",))
    await provider.restart()
    check = verifier(provider)
    try:
        assert (await check.verify(f"Bearer {token}")).user_id == "erin"
    finally:
        await check.close()


async def test_a_missing_provider_is_a_typed_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DORMANT_NANOIDP_PYTHON", str(tmp_path / "no-python"))
    with pytest.raises(OidcProviderNotInstalled, match="bootstrap"):
        await OidcProvider(tmp_path / "oidc").start()
