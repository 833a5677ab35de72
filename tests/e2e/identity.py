"""A token issuer for test meshes: the gateway's dev signing key, trusted by runtimes through an inline
key set (``DORMANT_OIDC_JWKS``), so tests that are not about identity carry real, verified tokens
without running an identity provider. Tests of identity itself use the real one (``dormant_local.oidc``)."""

from __future__ import annotations

import json
from pathlib import Path

from dormant_gateway.auth import Role, load_or_create_dev_key, mint_token
from dormant_gateway.config import DEFAULT_AUDIENCE, DEV_ISSUER


class DevIdentity:
    """The dev key kept in ``state_dir`` (the one a gateway with that state directory signs with)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.key = load_or_create_dev_key(state_dir)

    def trust_env(self) -> dict[str, str]:
        """What a runtime needs to verify this key's tokens."""
        return {
            "DORMANT_OIDC_ISSUER": DEV_ISSUER,
            "DORMANT_OIDC_AUDIENCE": DEFAULT_AUDIENCE,
            "DORMANT_OIDC_JWKS": json.dumps(self.key.jwks()),
        }

    def token(self, sub: str = "tester", *roles: str, ttl_s: float = 3600) -> str:
        return mint_token(
            self.key,
            sub=sub,
            roles=[Role(r) for r in roles],
            ttl_s=ttl_s,
            issuer=DEV_ISSUER,
            audience=DEFAULT_AUDIENCE,
        )
