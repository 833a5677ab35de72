"""The secrets settings, from ``DORMANT_*`` variables.

* ``DORMANT_SECRETS_PROVIDER``: ``openbao`` (the default when ``DORMANT_VAULT_ADDR`` is set) or
  ``kubernetes``; unset with no address means no secrets backend.
* ``DORMANT_VAULT_ADDR``, ``DORMANT_VAULT_CACERT`` (a CA bundle for an HTTPS address).
* ``DORMANT_VAULT_TOKEN``: the admin token (gateway and CLI: write secrets and policies).
* ``DORMANT_VAULT_SIDECAR_TOKEN``: the pod's token, which may only create tokens of the
  ``dormant-runtime`` role.
* ``DORMANT_VAULT_MOUNT``: the KV v2 mount (default ``secret``).
* ``DORMANT_SECRETS_TTL_S``: how often a runtime re-reads its secrets (default 30 s).
* ``DORMANT_SECRETS_NAMESPACE``: the Kubernetes namespace (default: the pod's own).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import SecretsNotConfigured
from .paths import DEFAULT_MOUNT

DEFAULT_TTL_S = 30.0
PROVIDERS = ("openbao", "kubernetes")
SECRET_VARIABLES = ("DORMANT_VAULT_TOKEN", "DORMANT_VAULT_SIDECAR_TOKEN")
"""Variables that hold tokens: the pod never hands them to a runtime process."""


@dataclass(frozen=True)
class SecretsConfig:
    provider: str | None
    addr: str | None = None
    token: str | None = field(default=None, repr=False)
    sidecar_token: str | None = field(default=None, repr=False)
    cacert: str | None = None
    mount: str = DEFAULT_MOUNT
    ttl_s: float = DEFAULT_TTL_S
    namespace: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SecretsConfig:
        """The settings in ``env`` (default ``os.environ``); ``ValueError`` for a bad value."""
        env = os.environ if env is None else env
        addr = env.get("DORMANT_VAULT_ADDR") or None
        provider = (env.get("DORMANT_SECRETS_PROVIDER") or "").strip().lower() or None
        if provider is None and addr:
            provider = "openbao"
        if provider == "vault":
            provider = "openbao"
        if provider is not None and provider not in PROVIDERS:
            raise ValueError(f"DORMANT_SECRETS_PROVIDER={provider!r}: expected one of {', '.join(PROVIDERS)}")
        if provider == "openbao" and not addr:
            raise ValueError("DORMANT_SECRETS_PROVIDER=openbao needs DORMANT_VAULT_ADDR")
        raw_ttl = env.get("DORMANT_SECRETS_TTL_S") or str(DEFAULT_TTL_S)
        try:
            ttl = float(raw_ttl)
        except ValueError:
            raise ValueError(f"DORMANT_SECRETS_TTL_S={raw_ttl!r} is not a number of seconds") from None
        if not 0.1 <= ttl <= 86400:
            raise ValueError(f"DORMANT_SECRETS_TTL_S={raw_ttl!r}: between 0.1 and 86400 seconds")
        cacert = env.get("DORMANT_VAULT_CACERT") or None
        if cacert is not None and not os.path.isfile(cacert):
            raise ValueError(f"DORMANT_VAULT_CACERT={cacert!r} is not a file")
        return cls(
            provider=provider,
            addr=addr,
            token=env.get("DORMANT_VAULT_TOKEN") or None,
            sidecar_token=env.get("DORMANT_VAULT_SIDECAR_TOKEN") or None,
            cacert=cacert,
            mount=env.get("DORMANT_VAULT_MOUNT") or DEFAULT_MOUNT,
            ttl_s=ttl,
            namespace=env.get("DORMANT_SECRETS_NAMESPACE") or None,
        )

    def admin_token(self) -> str:
        """The admin token, or ``SecretsNotConfigured`` saying what to set."""
        if self.provider != "openbao" or not self.addr:
            raise SecretsNotConfigured(
                "no secrets store is configured: set DORMANT_VAULT_ADDR and DORMANT_VAULT_TOKEN"
            )
        if not self.token:
            raise SecretsNotConfigured("DORMANT_VAULT_TOKEN is not set (the admin token for OpenBao)")
        return self.token
