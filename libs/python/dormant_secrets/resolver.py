"""Resolving a function's ``${SECRET:...}`` references, and keeping them fresh.

A reference resolves the function's own secret first, then the shared one of the same name. Each
secret is read once per refresh however many variables reference it, and re-read when it is older
than the TTL, so a rotated value reaches the process within one TTL without a redeploy. At load a
reference that cannot be resolved is an error naming the variable and the reference; later a failed
refresh keeps the last values and logs why (never a value).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from dormant_catalog.environment import SecretReference, environment_references, substitute

from .errors import SecretAccessDenied, SecretNotFound, SecretsError

log = logging.getLogger("dormant.secrets")


class SecretSource(Protocol):
    """Where a runtime reads secrets: None for a secret that does not exist in that scope."""

    async def read_function(self, service: str, name: str) -> dict[str, str] | None: ...

    async def read_shared(self, name: str) -> dict[str, str] | None: ...

    async def renew(self) -> None: ...

    async def close(self) -> None: ...


class SecretResolutionError(SecretsError):
    """A reference in the environment could not be resolved."""


class SecretResolver:
    """The variables of ``environment`` with their references resolved from ``source``."""

    def __init__(
        self,
        source: SecretSource,
        service: str,
        environment: Mapping[str, str],
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.service = service
        self.environment = dict(environment)
        self.ttl_s = ttl_s
        self._clock = clock
        self._references = environment_references(self.environment)
        self._cache: dict[str, tuple[float, dict[str, str]]] = {}
        self._resolved: dict[str, str] = {}
        self.reads = 0
        """Secrets read from the source so far (the cache's effect, for tests and metrics)."""

    def __repr__(self) -> str:
        return f"SecretResolver({self.service!r}, {len(self._references)} variables with references)"

    @property
    def referencing(self) -> frozenset[str]:
        """The variables whose values reference secrets."""
        return frozenset(self._references)

    async def _secret(self, name: str) -> dict[str, str]:
        now = self._clock()
        cached = self._cache.get(name)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        self.reads += 1
        try:
            fields = await self.source.read_function(self.service, name)
        except SecretAccessDenied:
            raise SecretResolutionError(
                f"secret {name!r} of function {self.service}: read refused (its policy does not grant it)"
            ) from None
        if fields is None:
            try:
                fields = await self.source.read_shared(name)
            except SecretAccessDenied:
                raise SecretResolutionError(
                    f"shared secret {name!r}: read refused (the policy of {self.service} does not grant it;"
                    " set its environment again so the policy is rewritten)"
                ) from None
        if fields is None:
            raise SecretNotFound(f"no secret {name!r} for {self.service} nor a shared one")
        self._cache[name] = (now, fields)
        return fields

    async def _resolve_variable(self, key: str) -> str:
        values: dict[SecretReference, str] = {}
        for ref in self._references[key]:
            try:
                fields = await self._secret(ref.name)
            except SecretsError as exc:
                raise SecretResolutionError(f"{key}: cannot resolve {ref.text}: {exc}") from None
            if ref.field not in fields:
                raise SecretResolutionError(
                    f"{key}: cannot resolve {ref.text}: secret {ref.name!r} has no field {ref.field!r}"
                )
            values[ref] = fields[ref.field]
        return substitute(self.environment[key], values.__getitem__)

    async def resolve(self) -> dict[str, str]:
        """Every variable, references resolved; ``SecretResolutionError`` names the first that fails."""
        resolved = dict(self.environment)
        for key in sorted(self._references):
            resolved[key] = await self._resolve_variable(key)
        self._resolved = {key: resolved[key] for key in self._references}
        return resolved

    async def refresh(self) -> dict[str, str]:
        """Re-resolve (secrets older than the TTL are read again); the variables whose value changed.
        A variable that fails keeps its last value (logged, without the value)."""
        changed: dict[str, str] = {}
        for key in sorted(self._references):
            try:
                value = await self._resolve_variable(key)
            except SecretsError as exc:
                log.warning("secrets refresh for %s: %s (keeping the last value)", self.service, exc)
                continue
            if self._resolved.get(key) != value:
                self._resolved[key] = value
                changed[key] = value
        return changed

    async def run(self, apply: Callable[[dict[str, str]], None]) -> None:
        """Every TTL: renew the token, refresh, and ``apply`` what changed (until cancelled)."""
        while True:
            await asyncio.sleep(self.ttl_s)
            try:
                await self.source.renew()
            except SecretsError as exc:
                log.warning("secrets refresh for %s: %s", self.service, exc)
            changed = await self.refresh()
            if changed:
                apply(changed)
                log.info("secrets refresh for %s: updated %s", self.service, ", ".join(sorted(changed)))
