"""Which ``SecretSource`` a runtime reads with, from the settings and the token its sidecar minted."""

from __future__ import annotations

from .config import SecretsConfig
from .errors import SecretsNotConfigured
from .kubernetes import KubernetesSource
from .openbao import OpenBaoSource
from .resolver import SecretSource


def runtime_source(config: SecretsConfig, token: str | None) -> SecretSource:
    """The source for a runtime; ``SecretsNotConfigured`` saying what is missing."""
    if config.provider == "kubernetes":
        return KubernetesSource.in_cluster(config.namespace)
    if config.provider == "openbao" and config.addr:
        if not token:
            raise SecretsNotConfigured(
                "the pod got no OpenBao token for this function"
                " (is DORMANT_VAULT_SIDECAR_TOKEN set for the pod?)"
            )
        return OpenBaoSource(config.addr, token, cacert=config.cacert, mount=config.mount)
    raise SecretsNotConfigured(
        "no secrets backend is configured (set DORMANT_VAULT_ADDR and DORMANT_VAULT_SIDECAR_TOKEN for the"
        " pod, or DORMANT_SECRETS_PROVIDER=kubernetes)"
    )
