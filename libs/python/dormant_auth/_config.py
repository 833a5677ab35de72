"""``IssuerConfig``: which token issuer a component trusts, and how it reaches it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ._claims import ClaimNames

DEFAULT_ALGORITHMS: tuple[str, ...] = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
"""Asymmetric algorithms only: an issuer's public keys can never verify an HMAC (no key confusion),
and ``none`` is never accepted."""


@dataclass(frozen=True, slots=True)
class IssuerConfig:
    """The trusted issuer. ``issuer`` is compared with the ``iss`` claim exactly; ``audience`` must be
    one of the token's ``aud`` values. Without ``jwks_url`` the key set's address comes from
    ``{issuer}/.well-known/openid-configuration`` (or ``discovery_url``). Opaque (non-JWT) tokens are
    accepted only when ``introspection_client_id`` is set (RFC 7662, client-secret basic auth)."""

    issuer: str
    audience: str
    discovery_url: str | None = None
    jwks_url: str | None = None
    jwks: str | None = field(default=None, repr=False)
    """A key set given inline (JSON text), as Istio's ``RequestAuthentication.jwks`` allows: used as is,
    never fetched nor refreshed (for an issuer this component cannot reach, such as the gateway's dev
    key)."""
    introspection_url: str | None = None
    introspection_client_id: str | None = None
    introspection_client_secret: str | None = field(default=None, repr=False)
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    leeway_s: int = 5
    """Clock skew allowed on ``exp`` and ``nbf``."""
    min_refresh_s: float = 10.0
    """An unknown ``kid`` refetches the key set at most this often (a flood of forged kids cannot make
    the component hammer the issuer)."""
    max_key_age_s: float = 3600.0
    """Keys older than this are refetched on the next call; if the issuer is down the old ones serve."""
    claims: ClaimNames = field(default_factory=ClaimNames)
    verify_tls: bool | str = True
    """False, True, or the path of a CA bundle (the dev mesh's own CA)."""

    @property
    def discovery(self) -> str:
        return self.discovery_url or self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> IssuerConfig | None:
        """``DORMANT_OIDC_ISSUER`` and ``DORMANT_OIDC_AUDIENCE`` (both needed), optionally
        ``DORMANT_OIDC_DISCOVERY_URL``, ``DORMANT_OIDC_JWKS_URL`` (or ``DORMANT_OIDC_JWKS``, the key set
        itself), ``DORMANT_OIDC_INTROSPECTION_URL``,
        ``DORMANT_OIDC_CLIENT_ID``/``DORMANT_OIDC_CLIENT_SECRET`` (introspection),
        ``DORMANT_OIDC_CA_FILE`` and ``DORMANT_OIDC_{USER,EMAIL,ROLES,GROUPS}_CLAIM``; None when no
        issuer is configured."""
        env = os.environ if env is None else env
        issuer = env.get("DORMANT_OIDC_ISSUER")
        if not issuer:
            return None
        audience = env.get("DORMANT_OIDC_AUDIENCE")
        if not audience:
            raise ValueError("DORMANT_OIDC_ISSUER is set but DORMANT_OIDC_AUDIENCE is not")
        return cls(
            issuer=issuer,
            audience=audience,
            discovery_url=env.get("DORMANT_OIDC_DISCOVERY_URL") or None,
            jwks_url=env.get("DORMANT_OIDC_JWKS_URL") or None,
            jwks=env.get("DORMANT_OIDC_JWKS") or None,
            introspection_url=env.get("DORMANT_OIDC_INTROSPECTION_URL") or None,
            introspection_client_id=env.get("DORMANT_OIDC_CLIENT_ID") or None,
            introspection_client_secret=env.get("DORMANT_OIDC_CLIENT_SECRET") or None,
            verify_tls=env.get("DORMANT_OIDC_CA_FILE") or True,
            claims=ClaimNames(
                user_id=env.get("DORMANT_OIDC_USER_CLAIM") or "sub",
                email=env.get("DORMANT_OIDC_EMAIL_CLAIM") or "email",
                roles=env.get("DORMANT_OIDC_ROLES_CLAIM") or "roles",
                groups=env.get("DORMANT_OIDC_GROUPS_CLAIM") or "groups",
            ),
        )
