"""The errors of the secrets package: messages name secrets, paths and references, never values."""

from __future__ import annotations


class SecretsError(Exception):
    """A secrets store could not do what was asked (unreachable, refused, misconfigured)."""


class SecretsNotConfigured(SecretsError):
    """No secrets backend is configured where one is needed."""


class SecretNotFound(SecretsError):
    """No secret of that name (in any scope the reader may look in)."""


class SecretAccessDenied(SecretsError):
    """The store refused the read (the token's policy does not grant it)."""
