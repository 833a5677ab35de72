"""The function's environment as the runtime applies it: ``${SECRET:...}`` references resolved
before the service is imported, then kept fresh.

The variables come in the ``load`` command (``Load.environment``) with, when they reference secrets,
a token the sidecar minted for this process and function (``Load.secrets_token``). A reference that
cannot be resolved fails the load with the variable and the reference named (never a value); a
reference with no secrets backend configured fails the same way, so no literal ``${SECRET:x}`` is
ever left for the handler. While the process serves, every ``DORMANT_SECRETS_TTL_S`` seconds (default
30) the secrets are read again and ``os.environ`` is updated, so a rotated value reaches the handler
within one TTL without a redeploy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from dormant._control import Load
from dormant_catalog.environment import environment_references, settable
from dormant_secrets import SecretResolver, SecretsConfig, SecretsError
from dormant_secrets.sources import runtime_source

log = logging.getLogger("dormant.runtime")


class EnvironmentSecrets:
    """The resolver of one runtime process and its refresh task (``close`` stops both)."""

    def __init__(self, resolver: SecretResolver) -> None:
        self.resolver = resolver
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"EnvironmentSecrets({self.resolver!r})"

    def start(self) -> None:
        self._task = asyncio.create_task(self.resolver.run(os.environ.update))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.resolver.source.close()


async def apply_environment(command: Load) -> EnvironmentSecrets | None:
    """Set the function's variables in ``os.environ``, references resolved; the refreshing secrets
    (started) when there are references, else None. ``SecretsError`` when one cannot be resolved."""
    environment = settable(command.environment)
    referencing = environment_references(environment)
    if not referencing:
        os.environ.update(environment)
        return None
    names = ", ".join(sorted(referencing))
    try:
        config = SecretsConfig.from_env()
    except ValueError as exc:
        raise SecretsError(f"{names} reference secrets, but the secrets settings are wrong: {exc}") from None
    try:
        source = runtime_source(config, command.secrets_token)
    except SecretsError as exc:
        raise SecretsError(f"{names} reference secrets: {exc}") from None
    resolver = SecretResolver(source, command.service, environment, ttl_s=config.ttl_s)
    try:
        resolved = await resolver.resolve()
    except SecretsError:
        await source.close()
        raise
    os.environ.update(resolved)
    secrets = EnvironmentSecrets(resolver)
    secrets.start()
    log.info("secrets of %s resolved for %s; refreshed every %g s", command.service, names, config.ttl_s)
    return secrets
