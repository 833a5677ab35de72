"""A real OpenID Connect provider for ``dormant dev`` and the tests: nanoidp, in its own virtualenv.

nanoidp (PyPI) is a test identity provider with real OAuth 2 / OIDC endpoints: discovery, JWKS,
``/token`` (client credentials, password grant), RFC 7662 introspection, revocation and key rotation.
It runs from a virtualenv of its own (``.tools/nanoidp``, made by deploy/bootstrap.sh) because it brings
~50 packages (Flask, its own Starlette and uvicorn) that Dormant's environment should not have to agree
with. Nothing here issues or signs a token: the provider does, and Dormant only asks it.

Users are made at run time through nanoidp's management API (guarded by a secret kept in the state
directory, mode 0600), each with the roles asked for; ``token(user, roles)`` returns an access token for
them. Keys live in the state directory, so a restarted provider keeps its issuer and keys.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx

from .ports import free_port, port_accepts, wait_until
from .processes import ChildProcess, ServerProcess

NANOIDP_VERSION = "3.4.0"
TOOLS_VENV = Path(".tools") / "nanoidp"
AUDIENCE = "dormant"
CLI_CLIENT = "dormant-cli"
SERVICE_CLIENT = "dormant-services"
"""The client the runtimes and the gateway introspect with."""
GATEWAY_CLIENT = "dormant-gateway"
"""The gateway's own client: its client-credentials token (subject ``dormant-gateway``, no roles) is what
cron ticks, queue messages, async invocations and public HTTP triggers call with."""
EMAIL_CLAIM = "attributes.email"
"""nanoidp puts a user's email under ``attributes`` in its access tokens (not as ``email``)."""


class OidcProviderNotInstalled(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            f"the dev identity provider (nanoidp {NANOIDP_VERSION}) is not installed: run "
            "`bash deploy/bootstrap.sh`, or set DORMANT_NANOIDP_PYTHON to a python that has nanoidp"
        )


def find_nanoidp_python() -> str:
    """``$DORMANT_NANOIDP_PYTHON``, else ``.tools/nanoidp/bin/python`` in this checkout."""
    override = os.environ.get("DORMANT_NANOIDP_PYTHON")
    if override:
        if not os.access(override, os.X_OK):
            raise OidcProviderNotInstalled()
        return override
    for folder in Path(__file__).resolve().parents:
        candidate = folder / TOOLS_VENV / "bin" / "python"
        if candidate.exists():
            return str(candidate)
    raise OidcProviderNotInstalled()


@dataclass(frozen=True, slots=True)
class ProviderSecrets:
    """Made once per state directory (mode 0600); never printed or logged."""

    management: str = field(repr=False)
    cli_client: str = field(repr=False)
    service_client: str = field(repr=False)
    gateway_client: str = field(repr=False)

    @classmethod
    def load_or_create(cls, path: Path) -> ProviderSecrets:
        """The secrets in ``path``; any missing (a file written before a secret existed, or no file) is
        made and the file rewritten, keeping the ones it had."""
        names = [f.name for f in fields(cls)]
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        kept = {name: data[name] for name in names if isinstance(data.get(name), str) and data[name]}
        if len(kept) == len(names):
            return cls(**kept)
        made = {name: kept.get(name) or secrets.token_urlsafe(24) for name in names}
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(descriptor, 0o600)  # a file that existed keeps its mode through os.open
        with os.fdopen(descriptor, "w") as out:
            json.dump(made, out)
        return cls(**made)


class OidcProvider(ServerProcess):
    """nanoidp on 127.0.0.1 with its configuration, keys and secrets in ``state_dir``."""

    start_timeout = 30.0

    def __init__(self, state_dir: Path, *, port: int | None = None, token_minutes: int = 60) -> None:
        super().__init__()
        self.state_dir = Path(state_dir).absolute()
        saved = self._saved_port()
        self.port = port or saved or free_port()
        self.token_minutes = token_minutes
        self.secrets = ProviderSecrets.load_or_create(self.state_dir / "secrets.json")

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def service_env(self) -> dict[str, str]:
        """What a runtime or the gateway needs to verify this provider's tokens (see
        ``dormant_auth.IssuerConfig.from_env``)."""
        return {
            "DORMANT_OIDC_ISSUER": self.issuer,
            "DORMANT_OIDC_AUDIENCE": AUDIENCE,
            "DORMANT_OIDC_CLIENT_ID": SERVICE_CLIENT,
            "DORMANT_OIDC_CLIENT_SECRET": self.secrets.service_client,
            "DORMANT_OIDC_EMAIL_CLAIM": EMAIL_CLAIM,
        }

    def gateway_env(self) -> dict[str, str]:
        """The gateway's own client (client credentials), on top of ``service_env()``: only the gateway
        gets this secret, never a runtime."""
        return {
            "DORMANT_GATEWAY_CLIENT_ID": GATEWAY_CLIENT,
            "DORMANT_GATEWAY_CLIENT_SECRET": self.secrets.gateway_client,
        }

    def _saved_port(self) -> int | None:
        try:
            return int((self.state_dir / "port").read_text())
        except (OSError, ValueError):
            return None

    def _write_config(self) -> Path:
        config_dir = self.state_dir / "config"
        config_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "keys").mkdir(exist_ok=True)
        settings: dict[str, Any] = {
            "config_version": 1,
            "security_profile": "dev",
            "server": {"host": "127.0.0.1", "port": self.port},
            "oauth": {
                "issuer": self.issuer,
                "audience": AUDIENCE,
                "token_expiry_minutes": self.token_minutes,
                "clients": [
                    {"client_id": CLI_CLIENT, "client_secret": self.secrets.cli_client},
                    {"client_id": SERVICE_CLIENT, "client_secret": self.secrets.service_client},
                    {"client_id": GATEWAY_CLIENT, "client_secret": self.secrets.gateway_client},
                ],
            },
            "jwt": {"keys_dir": str(self.state_dir / "keys"), "max_previous_keys": 2},
            "session": {"management_secret": self.secrets.management},
            "logging": {"level": "WARNING"},
        }
        # JSON is YAML: nanoidp reads these with its YAML loader.
        for name, document in (
            ("settings.yaml", settings),
            ("users.yaml", {"config_version": 1, "users": {}}),
        ):
            descriptor = os.open(config_dir / name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as out:
                json.dump(document, out, indent=1)
        (self.state_dir / "port").write_text(str(self.port))
        return config_dir

    async def start(self) -> None:
        if self.running:
            return
        python = find_nanoidp_python()
        config_dir = self._write_config()
        child = ChildProcess(
            [
                python,
                "-m",
                "nanoidp",
                "--config",
                str(config_dir),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            name="nanoidp",
            log_file=self.state_dir / "nanoidp.log",
            cwd=self.state_dir,
        )
        child.spawn()
        self._child = child
        try:
            await wait_until(lambda: port_accepts(self.port), within=self.start_timeout, failed=self._failed)
        except (RuntimeError, TimeoutError) as exc:
            child.kill()
            raise RuntimeError(
                f"the OIDC provider did not start on port {self.port}: {exc}\n{child.log_tail()}"
            ) from exc

    def _failed(self) -> str | None:
        child = self._child
        if child is not None and not child.running:
            return f"nanoidp exited with status {child.returncode}"
        return None

    # --- asking the provider (its management API) -------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"X-Management-Secret": self.secrets.management}

    async def token(
        self,
        user: str,
        roles: tuple[str, ...] = (),
        *,
        email: str | None = None,
        groups: tuple[str, ...] = (),
        minutes: int | None = None,
    ) -> str:
        """An access token for ``user`` holding exactly ``roles`` (the user is made, or remade, first)."""
        return await token_for(
            self.issuer,
            self.secrets.management,
            user,
            roles,
            email=email,
            groups=groups,
            minutes=minutes or self.token_minutes,
        )

    async def rotate_keys(self) -> str:
        """Rotate the signing key (the JWKS keeps the previous ones); the new key id."""
        async with httpx.AsyncClient(timeout=10.0) as http:
            response = await http.post(f"{self.issuer}/api/keys/rotate", headers=self._headers())
            response.raise_for_status()
            return str(response.json()["new_kid"])


async def token_for(
    issuer: str,
    management_secret: str,
    user: str,
    roles: tuple[str, ...] = (),
    *,
    email: str | None = None,
    groups: tuple[str, ...] = (),
    minutes: int = 60,
) -> str:
    """Make (or remake) ``user`` at a running nanoidp with ``roles``, and return an access token."""
    headers = {"X-Management-Secret": management_secret}
    async with httpx.AsyncClient(base_url=issuer, timeout=10.0) as http:
        await http.delete(f"/api/runtime/users/{user}", headers=headers)  # 404 when new: fine
        created = await http.post(
            "/api/runtime/users",
            headers=headers,
            json={
                "username": user,
                "password": secrets.token_urlsafe(16),
                "email": email or f"{user}@example.com",
                "roles": list(roles),
                "groups": list(groups),
                "attributes": {"email": email or f"{user}@example.com"},
            },
        )
        created.raise_for_status()
        minted = await http.post(
            f"/api/users/{user}/token",
            headers=headers,
            json={"exp_minutes": max(1, min(minutes, 1440)), "client_id": CLI_CLIENT},
        )
        minted.raise_for_status()
        return str(minted.json()["access_token"])
