"""The pod's part in secrets: a scoped token for each runtime that needs one.

With OpenBao configured for the pod (``DORMANT_VAULT_ADDR`` and ``DORMANT_VAULT_SIDECAR_TOKEN``, a token
that may only create tokens of the ``dormant-runtime`` role), loading a version whose environment
references secrets first mints a token carrying the function's policy ``dormant-fn-{service}``; the
token travels in the runtime's ``load`` command, never in its process environment, and the pod's own
tokens are removed from the environment its runtimes inherit. Without OpenBao (or with the Kubernetes
provider, which reads with the pod's service account) no token is minted and the runtime says what is
missing if it needs one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from dormant_catalog.environment import environment_references, settable
from dormant_secrets.config import SECRET_VARIABLES, SecretsConfig
from dormant_secrets.errors import SecretsError
from dormant_secrets.openbao import TokenMinter

from .runtime import RuntimeFailed

log = logging.getLogger("dormant.sidecar")


def without_secret_variables(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the pod's secrets-store tokens (a runtime must not inherit them)."""
    return {key: value for key, value in env.items() if key not in SECRET_VARIABLES}


class RuntimeTokens:
    """Mints the token a runtime resolves its function's secrets with (None when it needs none)."""

    def __init__(self, minter: TokenMinter | None) -> None:
        self.minter = minter

    @classmethod
    def from_env(cls) -> RuntimeTokens:
        try:
            config = SecretsConfig.from_env()
        except ValueError as exc:
            raise SystemExit(f"secrets settings: {exc}") from None
        return cls(TokenMinter.from_config(config))

    async def token_for(self, service: str, environment: Mapping[str, str]) -> str | None:
        """A fresh token for one runtime of ``service`` when its environment references secrets and
        OpenBao is configured; ``RuntimeFailed`` when the store refuses or cannot be reached."""
        if self.minter is None or not environment_references(settable(environment)):
            return None
        try:
            return await self.minter.mint(service)
        except SecretsError as exc:
            raise RuntimeFailed(f"cannot get a secrets token for {service}: {exc}") from None
