"""Settings shared by every component, read from flags, ``DORMANT_*`` environment variables, or the
running dev mesh of the current project.

Where a setting is given neither as an argument nor in the environment, the dev mesh's record
(``.dormant/dev/mesh.json``, written by ``dormant dev`` while it runs, in the current directory or
the nearest parent that has one) supplies it, so ``dormant call`` and ``dormant.Client()`` reach the
project's mesh from any shell, as Temporal's and Dapr's dev tools do. The built-in defaults come last.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"
DEFAULT_CATALOG_URL = "postgresql://127.0.0.1:5432/dormant"
DEV_MESH_RECORD = Path(".dormant") / "dev" / "mesh.json"


def dev_mesh(start: Path | None = None) -> dict[str, str]:
    """The running dev mesh's URLs (``brokerUrl``, ``catalogUrl``, ``layerStore``, ``gatewayUrl``) from
    the nearest ``.dormant/dev/mesh.json`` at or above ``start`` (the current directory); {} if none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        record = folder / DEV_MESH_RECORD
        if record.exists():
            return read_mesh_record(record)
    return {}


def read_mesh_record(path: Path) -> dict[str, str]:
    """The string fields of a dev mesh record (``mesh.json``); {} when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {key: value for key, value in data.items() if isinstance(value, str)}


def default_layer_store() -> Path:
    """``$XDG_DATA_HOME/dormant/layers`` (an OCI image layout directory)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "dormant" / "layers"


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://[user:pass@]host[:port]`` (``mqtts://`` for TLS, default ports 1883 / 8883)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError(f"unsupported broker URL scheme {parts.scheme!r} (use mqtt:// or mqtts://)")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or (8883 if tls else 1883),
        username=parts.username,
        password=parts.password,
        tls=tls,
    )


def _read_token(path: str | None) -> str | None:
    """The token kept in the dev mesh's token file (``tokenFile`` in its record), if readable."""
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    catalog_url: str = DEFAULT_CATALOG_URL
    layer_store: Path = Path()
    token: str | None = field(default=None, repr=False)
    """The bearer token a client sends with its calls: ``DORMANT_TOKEN``, or the dev mesh's developer
    token when the broker is the dev mesh's; None: calls carry no token."""

    @classmethod
    def from_env(
        cls,
        *,
        broker_url: str | None = None,
        catalog_url: str | None = None,
        layer_store: str | Path | None = None,
    ) -> Settings:
        """Explicit arguments win over the environment, then the running dev mesh, then the defaults."""
        broker_url = broker_url or os.environ.get("DORMANT_BROKER_URL")
        catalog_url = catalog_url or os.environ.get("DORMANT_CATALOG_URL")
        layer_store = layer_store or os.environ.get("DORMANT_LAYER_STORE")
        token = os.environ.get("DORMANT_TOKEN") or None
        mesh = dev_mesh() if not (broker_url and catalog_url and layer_store and token) else {}
        if token is None and mesh.get("brokerUrl") in (None, broker_url or mesh.get("brokerUrl")):
            # Only the dev mesh's own broker gets the dev mesh's token.
            token = _read_token(mesh.get("tokenFile"))
        return cls(
            broker_url=broker_url or mesh.get("brokerUrl") or DEFAULT_BROKER_URL,
            catalog_url=catalog_url or mesh.get("catalogUrl") or DEFAULT_CATALOG_URL,
            layer_store=Path(layer_store or mesh.get("layerStore") or default_layer_store()),
            token=token,
        )

    @property
    def broker(self) -> BrokerAddress:
        return parse_broker_url(self.broker_url)
