"""The gateway's own identity against the real dev provider (nanoidp, ``dormant_local.oidc``): the client
``dormant dev`` registers for the gateway gets a client-credentials token through the discovered token
endpoint, and ``dormant_auth`` (what every runtime runs) verifies it as the subject ``dormant-gateway``
with no roles. A wrong secret is refused without the secret showing up in the error."""

from __future__ import annotations

import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dormant.errors import Unavailable
from dormant_auth import IssuerConfig, TokenVerifier
from dormant_gateway.auth.identity import GATEWAY_SUBJECT, identity_from
from dormant_local.oidc import GATEWAY_CLIENT, OidcProvider, ProviderSecrets


@pytest_asyncio.fixture(scope="module")
async def provider(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OidcProvider]:
    idp = OidcProvider(Path(tmp_path_factory.mktemp("oidc")))
    await idp.start()
    try:
        yield idp
    finally:
        await idp.stop()


async def test_the_gateway_client_gets_a_token_the_runtimes_verify(provider: OidcProvider) -> None:
    env = provider.gateway_env()
    assert env["DORMANT_GATEWAY_CLIENT_ID"] == GATEWAY_CLIENT
    identity = identity_from(
        dev_key=None,
        issuer=provider.issuer,
        audience="dormant",
        oidc_issuer=provider.issuer,
        client_id=env["DORMANT_GATEWAY_CLIENT_ID"],
        client_secret=env["DORMANT_GATEWAY_CLIENT_SECRET"],
    )
    assert identity is not None
    config = IssuerConfig.from_env(provider.service_env())
    assert config is not None
    verifier = TokenVerifier(config)
    try:
        authorization = await identity.authorization()
        assert await identity.authorization() == authorization  # kept, not fetched per call
        assert identity.fetches == 1
        user = await verifier.verify(authorization)
    finally:
        await verifier.close()
        await identity.close()
    assert user.user_id == GATEWAY_SUBJECT and user.roles == ()
    assert env["DORMANT_GATEWAY_CLIENT_SECRET"] not in repr(identity)


async def test_a_wrong_secret_is_refused_without_showing_it(provider: OidcProvider) -> None:
    wrong = "not-the-gateway-secret"
    identity = identity_from(
        dev_key=None,
        issuer=provider.issuer,
        audience="dormant",
        oidc_issuer=provider.issuer,
        client_id=GATEWAY_CLIENT,
        client_secret=wrong,
    )
    assert identity is not None
    try:
        with pytest.raises(Unavailable) as raised:
            await identity.authorization()
    finally:
        await identity.close()
    assert "401" in raised.value.message or "400" in raised.value.message, raised.value.message
    assert wrong not in json.dumps(raised.value.to_payload())


def test_an_older_secrets_file_gains_the_gateway_secret_and_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "secrets.json"
    path.write_text(json.dumps({"management": "m", "cli_client": "c", "service_client": "s"}))
    loaded = ProviderSecrets.load_or_create(path)
    assert (loaded.management, loaded.cli_client, loaded.service_client) == ("m", "c", "s")
    assert loaded.gateway_client and json.loads(path.read_text())["gateway_client"] == loaded.gateway_client
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ProviderSecrets.load_or_create(path) == loaded
    assert loaded.gateway_client not in repr(loaded)
