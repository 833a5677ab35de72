"""OpenBao (or HashiCorp Vault) through ``hvac``: reading secrets with a function's token, the admin
side (writing secrets and policies, the runtime token role) and the sidecar's token minting.

hvac is synchronous (requests), so every call runs in a worker thread. Errors are mapped to the
package's own (``SecretNotFound``, ``SecretAccessDenied``, ``SecretsError``) with messages that name
paths, never values; hvac's own exception text is not passed on for writes, whose request carried one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import hvac
import hvac.exceptions
import requests

from dormant_catalog.environment import environment_references

from .config import SecretsConfig
from .errors import SecretAccessDenied, SecretNotFound, SecretsError
from .paths import (
    DEFAULT_MOUNT,
    POLICY_PREFIX,
    RUNTIME_ROLE,
    SIDECAR_POLICY,
    check_name,
    function_dir,
    function_path,
    function_policy,
    policy_name,
    shared_path,
    sidecar_policy,
)

log = logging.getLogger("dormant.secrets")

T = TypeVar("T")

RUNTIME_TOKEN_PERIOD_S = 600
"""A runtime token is periodic: it lives this long unless renewed (the runtime renews it at each
refresh), so a token that leaks from a stopped runtime dies within minutes."""
TIMEOUT_S = 10


def client(addr: str, token: str | None, cacert: str | None = None) -> hvac.Client:
    """An hvac client for ``addr`` (verifying HTTPS against ``cacert`` when given)."""
    return hvac.Client(url=addr, token=token, verify=cacert or True, timeout=TIMEOUT_S)


def _call(addr: str, what: str, work: Callable[[], T]) -> T:
    """``work()``, its hvac failures mapped to this package's errors."""
    try:
        return work()
    except hvac.exceptions.Forbidden:
        raise SecretAccessDenied(f"OpenBao refused to {what} (permission denied)") from None
    except hvac.exceptions.InvalidPath:
        raise SecretNotFound(f"nothing to {what}: no such secret") from None
    except hvac.exceptions.VaultError as exc:
        raise SecretsError(f"OpenBao could not {what}: {type(exc).__name__}") from None
    except requests.RequestException as exc:
        raise SecretsError(f"cannot reach OpenBao at {addr} to {what}: {type(exc).__name__}") from None


def _fields(data: Any) -> dict[str, str]:
    fields = data.get("data", {}).get("data") if isinstance(data, dict) else None
    if not isinstance(fields, dict):
        return {}
    return {str(k): v if isinstance(v, str) else str(v) for k, v in fields.items()}


class OpenBaoSource:
    """Reads one function's secrets with the token the sidecar minted for it (a ``SecretSource``)."""

    def __init__(self, addr: str, token: str, *, cacert: str | None = None, mount: str = DEFAULT_MOUNT):
        self.addr = addr
        self.mount = mount
        self._client = client(addr, token, cacert)
        self._renewed_at = time.monotonic()

    def __repr__(self) -> str:
        return f"OpenBaoSource({self.addr!r})"

    def _read(self, path: str) -> dict[str, str] | None:
        def work() -> dict[str, str]:
            return _fields(
                self._client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.mount, raise_on_deleted_version=True
                )
            )

        try:
            return _call(self.addr, f"read {self.mount}/{path}", work)
        except SecretNotFound:
            return None

    async def read_function(self, service: str, name: str) -> dict[str, str] | None:
        return await asyncio.to_thread(self._read, function_path(service, name))

    async def read_shared(self, name: str) -> dict[str, str] | None:
        return await asyncio.to_thread(self._read, shared_path(name))

    async def renew(self) -> None:
        """Renew the token (periodic: back to its full period) once a quarter of its period has gone."""
        if time.monotonic() - self._renewed_at < RUNTIME_TOKEN_PERIOD_S / 4:
            return
        await asyncio.to_thread(
            _call, self.addr, "renew the runtime token", self._client.auth.token.renew_self
        )
        self._renewed_at = time.monotonic()

    async def close(self) -> None:
        """Revoke the token: the process that held it is done."""
        try:
            await asyncio.to_thread(
                _call, self.addr, "revoke the runtime token", self._client.auth.token.revoke_self
            )
        except SecretsError as exc:
            log.warning("%s", exc)
        finally:
            self._client.adapter.close()


class TokenMinter:
    """The sidecar's side: with a token that may only create ``dormant-runtime`` tokens, mint one
    carrying a function's policy for the runtime that serves it."""

    def __init__(self, addr: str, token: str, *, cacert: str | None = None) -> None:
        self.addr = addr
        self._client = client(addr, token, cacert)

    def __repr__(self) -> str:
        return f"TokenMinter({self.addr!r})"

    @classmethod
    def from_config(cls, config: SecretsConfig) -> TokenMinter | None:
        """A minter when OpenBao and the sidecar token are configured, else None."""
        if config.provider != "openbao" or not config.addr or not config.sidecar_token:
            return None
        return cls(config.addr, config.sidecar_token, cacert=config.cacert)

    def _mint(self, service: str) -> str:
        def work() -> str:
            answer = self._client.auth.token.create(
                role_name=RUNTIME_ROLE,
                policies=[policy_name(service)],
                display_name=f"runtime-{service}",
                meta={"service": service},
            )
            return str(answer["auth"]["client_token"])

        return _call(self.addr, f"create a {RUNTIME_ROLE} token for {service}", work)

    async def mint(self, service: str) -> str:
        return await asyncio.to_thread(self._mint, service)


@dataclass(frozen=True)
class SecretInfo:
    """What may be shown of a secret: its name, version and field names (never a value)."""

    name: str
    version: int
    fields: tuple[str, ...] = ()


class OpenBaoAdmin:
    """The admin side (gateway and CLI, with ``DORMANT_VAULT_TOKEN``): secrets, policies, the role."""

    def __init__(self, addr: str, token: str, *, cacert: str | None = None, mount: str = DEFAULT_MOUNT):
        self.addr = addr
        self.mount = mount
        self._client = client(addr, token, cacert)

    def __repr__(self) -> str:
        return f"OpenBaoAdmin({self.addr!r})"

    @classmethod
    def from_config(cls, config: SecretsConfig) -> OpenBaoAdmin:
        token = config.admin_token()
        assert config.addr is not None
        return cls(config.addr, token, cacert=config.cacert, mount=config.mount)

    def close(self) -> None:
        self._client.adapter.close()

    # -- set-up

    def setup(self) -> None:
        """Make the store ready: a KV v2 engine at the mount, the ``dormant-runtime`` token role
        (policies ``dormant-fn-*`` only, periodic) and the sidecar's policy. Idempotent."""

        def work() -> None:
            mounts = self._client.sys.list_mounted_secrets_engines()
            mounts = mounts.get("data", mounts)
            if f"{self.mount}/" not in mounts:
                self._client.sys.enable_secrets_engine("kv", path=self.mount, options={"version": "2"})
            self._client.write_data(
                f"auth/token/roles/{RUNTIME_ROLE}",
                data={
                    "allowed_policies_glob": [f"{POLICY_PREFIX}*"],
                    "disallowed_policies": ["root"],
                    "orphan": False,
                    "renewable": True,
                    "token_period": RUNTIME_TOKEN_PERIOD_S,
                    "token_type": "service",
                },
            )
            self._client.sys.create_or_update_policy(SIDECAR_POLICY, sidecar_policy())

        _call(self.addr, "set up the secrets store", work)

    def create_sidecar_token(self, *, ttl: str | None = None) -> str:
        """A token for pods: it may only create ``dormant-runtime`` tokens (``setup`` first)."""

        def work() -> str:
            answer = self._client.auth.token.create(
                policies=[SIDECAR_POLICY],
                no_default_policy=False,
                renewable=True,
                ttl=ttl,
                display_name="dormant-sidecar",
                no_parent=True,
            )
            return str(answer["auth"]["client_token"])

        return _call(self.addr, "create the sidecar token", work)

    # -- secrets

    def _path(self, service: str | None, name: str) -> str:
        return function_path(service, name) if service else shared_path(name)

    def set_secret(self, service: str | None, name: str, value: str | Mapping[str, str]) -> int:
        """Store a new version of a secret (a plain value is the field ``value``); its version."""
        fields = {"value": value} if isinstance(value, str) else dict(value)
        if not fields or not all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items()):
            raise ValueError(f"secret {name}: a value is a string or an object of string fields")
        for key in fields:
            check_name(key)
        path = self._path(service, name)

        def work() -> int:
            answer = self._client.secrets.kv.v2.create_or_update_secret(
                path=path, secret=fields, mount_point=self.mount
            )
            return int(answer["data"]["version"])

        return _call(self.addr, f"write {self.mount}/{path}", work)

    def delete_secret(self, service: str | None, name: str) -> bool:
        """Delete every version of a secret; False when there was none."""
        path = self._path(service, name)

        def work() -> bool:
            try:
                self._client.secrets.kv.v2.read_secret_metadata(path=path, mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                return False
            self._client.secrets.kv.v2.delete_metadata_and_all_versions(path=path, mount_point=self.mount)
            return True

        return _call(self.addr, f"delete {self.mount}/{path}", work)

    def list_secrets(self, service: str | None) -> list[SecretInfo]:
        """The secrets of a function (or the shared ones): names, current versions, field names."""
        directory = function_dir(service) if service else shared_path("x").rsplit("/", 1)[0]

        def work() -> list[SecretInfo]:
            try:
                keys = self._client.secrets.kv.v2.list_secrets(path=directory, mount_point=self.mount)
            except hvac.exceptions.InvalidPath:
                return []
            found: list[SecretInfo] = []
            for key in sorted(keys["data"]["keys"]):
                if key.endswith("/"):
                    continue
                meta = self._client.secrets.kv.v2.read_secret_metadata(
                    path=f"{directory}/{key}", mount_point=self.mount
                )["data"]
                version = int(meta.get("current_version") or 0)
                current = (meta.get("versions") or {}).get(str(version)) or {}
                if current.get("deletion_time") or current.get("destroyed"):
                    continue
                fields: tuple[str, ...] = ()
                try:
                    data = self._client.secrets.kv.v2.read_secret_version(
                        path=f"{directory}/{key}", mount_point=self.mount, raise_on_deleted_version=True
                    )
                    fields = tuple(sorted(_fields(data)))
                except hvac.exceptions.InvalidPath:
                    continue
                found.append(SecretInfo(key, version, fields))
            return found

        return _call(self.addr, f"list {self.mount}/{directory}", work)

    # -- policies

    def write_policy(self, service: str, environment: Mapping[str, str]) -> list[str]:
        """Write ``dormant-fn-{service}`` for ``environment``; the shared names it grants."""
        shared = referenced_names(environment)
        text = function_policy(service, shared, mount=self.mount)
        _call(
            self.addr,
            f"write the policy {policy_name(service)}",
            lambda: self._client.sys.create_or_update_policy(policy_name(service), text),
        )
        return shared


def referenced_names(environment: Mapping[str, str]) -> list[str]:
    """The secret names ``environment`` references (for messages and policies)."""
    return sorted({ref.name for refs in environment_references(environment).values() for ref in refs})
