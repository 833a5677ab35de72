"""Kubernetes Secrets as the secrets store (``DORMANT_SECRETS_PROVIDER=kubernetes``), in-cluster.

A function's own secrets are the keys of the Secret ``dormant-{service}``, shared ones the keys of
``dormant-shared``, in the pod's namespace (or ``DORMANT_SECRETS_NAMESPACE``). A key holds one value,
so ``${SECRET:name}`` reads key ``name``; ``${SECRET:name#field}`` reads key ``name.field``. Access is
scoped by the pod's service account (RBAC), not per function: every runtime of the pod reads with it.
Reads go through the ``kubernetes`` client (``pip install kubernetes``) with the in-cluster
configuration. Only the read side lives here: secrets are written with ``kubectl``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from pathlib import Path
from typing import Any

from .errors import SecretAccessDenied, SecretsError, SecretsNotConfigured

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
SHARED_SECRET = "dormant-shared"


def secret_object(service: str | None) -> str:
    return f"dormant-{service}" if service else SHARED_SECRET


class KubernetesSource:
    """A ``SecretSource`` over a ``CoreV1Api`` (the in-cluster one from ``in_cluster``)."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self._objects: dict[str, dict[str, str] | None] = {}

    def __repr__(self) -> str:
        return f"KubernetesSource({self.namespace!r})"

    @classmethod
    def in_cluster(cls, namespace: str | None = None) -> KubernetesSource:
        try:
            from kubernetes import client, config  # lazy: an optional dependency, only for this provider
        except ImportError:
            raise SecretsNotConfigured(
                "DORMANT_SECRETS_PROVIDER=kubernetes needs the kubernetes client (pip install kubernetes)"
            ) from None
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            raise SecretsNotConfigured(
                f"DORMANT_SECRETS_PROVIDER=kubernetes outside a cluster: {exc}"
            ) from None
        if namespace is None:
            try:
                namespace = NAMESPACE_FILE.read_text().strip()
            except OSError:
                raise SecretsNotConfigured(
                    "cannot tell the pod's namespace: set DORMANT_SECRETS_NAMESPACE"
                ) from None
        return cls(client.CoreV1Api(), namespace)

    def _read_object(self, name: str) -> dict[str, str] | None:
        try:
            secret = self.api.read_namespaced_secret(name, self.namespace)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if status == 404:
                return None
            if status == 403:
                raise SecretAccessDenied(
                    f"the pod's service account may not read secret {name} in {self.namespace}"
                ) from None
            raise SecretsError(
                f"cannot read secret {name} in {self.namespace}: {type(exc).__name__}"
            ) from None
        values: dict[str, str] = {}
        for key, encoded in (secret.data or {}).items():
            try:
                values[key] = base64.b64decode(encoded, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise SecretsError(f"secret {name} key {key} is not base64 of UTF-8 text") from None
        for key, text in (getattr(secret, "string_data", None) or {}).items():
            values.setdefault(key, text)
        return values

    async def _fields(self, service: str | None, name: str) -> dict[str, str] | None:
        data = await asyncio.to_thread(self._read_object, secret_object(service))
        if data is None:
            return None
        fields = {key[len(name) + 1 :]: value for key, value in data.items() if key.startswith(f"{name}.")}
        if name in data:
            fields["value"] = data[name]
        return fields or None

    async def read_function(self, service: str, name: str) -> dict[str, str] | None:
        return await self._fields(service, name)

    async def read_shared(self, name: str) -> dict[str, str] | None:
        return await self._fields(None, name)

    async def renew(self) -> None:
        """Nothing to renew: the service account's token is the kubelet's to rotate."""

    async def close(self) -> None:
        """Nothing to release."""
