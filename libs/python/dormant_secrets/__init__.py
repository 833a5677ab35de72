"""Secrets for functions: values kept in a secrets store (OpenBao / HashiCorp Vault, or Kubernetes
Secrets), referenced from a function's environment as ``${SECRET:name}`` or ``${SECRET:name#field}``.

Owns where secrets live (``paths``: KV v2 paths and the per-function OpenBao policy), the providers
(``openbao``: reading, writing, policies, the runtime token role and token minting through ``hvac``;
``kubernetes``: reading ``dormant-{service}`` / ``dormant-shared`` Secrets), the settings
(``config``) and the refreshing resolver the runtime uses (``resolver``). The reference syntax is the
catalog's (``dormant_catalog.environment``), which validates it. A secret's value is never put in a
message, a log line or a repr.
"""

from __future__ import annotations

from .config import SecretsConfig
from .errors import SecretAccessDenied, SecretNotFound, SecretsError, SecretsNotConfigured
from .resolver import SecretResolver, SecretSource

__all__ = [
    "SecretAccessDenied",
    "SecretNotFound",
    "SecretResolver",
    "SecretSource",
    "SecretsConfig",
    "SecretsError",
    "SecretsNotConfigured",
]
