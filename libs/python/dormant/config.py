"""Settings shared by every component, read from flags or ``DORMANT_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_BROKER_URL = "mqtt://127.0.0.1:1883"
DEFAULT_CATALOG_URL = "postgresql://127.0.0.1:5432/dormant"


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


@dataclass(frozen=True, slots=True)
class Settings:
    broker_url: str = DEFAULT_BROKER_URL
    catalog_url: str = DEFAULT_CATALOG_URL
    layer_store: Path = Path()

    @classmethod
    def from_env(
        cls,
        *,
        broker_url: str | None = None,
        catalog_url: str | None = None,
        layer_store: str | Path | None = None,
    ) -> Settings:
        """Explicit arguments win over the environment, which wins over the defaults."""
        return cls(
            broker_url=broker_url or os.environ.get("DORMANT_BROKER_URL") or DEFAULT_BROKER_URL,
            catalog_url=catalog_url or os.environ.get("DORMANT_CATALOG_URL") or DEFAULT_CATALOG_URL,
            layer_store=Path(layer_store or os.environ.get("DORMANT_LAYER_STORE") or default_layer_store()),
        )

    @property
    def broker(self) -> BrokerAddress:
        return parse_broker_url(self.broker_url)
