"""Gateway settings: flags win over ``DORMANT_*`` environment variables, which win over the defaults.

Settings the server could not use (TLS files it cannot load, HSTS without HTTPS) are refused here, at
start, with a ValueError that names the setting."""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field, replace
from pathlib import Path

from dormant.config import DEFAULT_BROKER_URL, DEFAULT_CATALOG_URL, Settings
from dormant_catalog.gateway.functions import DEFAULT_RETENTION_S

DEV_ISSUER = "urn:dormant:dev"
DEFAULT_AUDIENCE = "dormant"
DEFAULT_PORT = 8080
DEFAULT_HSTS_MAX_AGE_S = 31_536_000
"""One year: the ``max-age`` of ``Strict-Transport-Security`` when the gateway serves HTTPS."""

TLS_CERT_SETTING = "--tls-cert (DORMANT_GATEWAY_TLS_CERT)"
TLS_KEY_SETTING = "--tls-key (DORMANT_GATEWAY_TLS_KEY)"
HSTS_SETTING = "DORMANT_GATEWAY_HSTS_MAX_AGE"


def default_state_dir() -> Path:
    """``$DORMANT_STATE_DIR``, else ``$XDG_STATE_HOME/dormant``, else ``~/.local/state/dormant``."""
    explicit = os.environ.get("DORMANT_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "dormant"


def _float_env(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _production_issuer(value: str | None) -> str | None:
    """``DORMANT_OIDC_ISSUER``, except the dev issuer's name: that is this gateway's own dev key (the
    environment ``dormant dev`` gives its runtimes names it, with the key set inline)."""
    return None if not value or value == DEV_ISSUER else value


def _path_env(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _hsts_env() -> int | None:
    """``DORMANT_GATEWAY_HSTS_MAX_AGE`` in seconds (ASCII digits only), or None when it is not set."""
    value = os.environ.get(HSTS_SETTING)
    if not value:
        return None
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"{HSTS_SETTING} must be a whole number of seconds (0: no header), not {value!r}")
    return int(value)


class _EncryptedKey(Exception):
    """Raised by the password callback: the key is encrypted (OpenSSL would otherwise prompt on a tty)."""


def _no_password() -> str:
    raise _EncryptedKey


def check_tls_files(cert: Path | None, key: Path | None) -> None:
    """Refuse, with a ValueError naming the setting, TLS files the server could not load: a key without
    a certificate, a file that cannot be read, a certificate without its key (in ``key`` or in the
    certificate file itself), a key that does not match, an encrypted key. The same load uvicorn does."""
    if cert is None:
        if key is not None:
            raise ValueError(f"{TLS_KEY_SETTING} is set without {TLS_CERT_SETTING}: give the certificate too")
        return
    for path, setting in ((cert, TLS_CERT_SETTING), (key, TLS_KEY_SETTING)):
        if path is None:
            continue
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ValueError(f"{setting}: cannot read {path}: {exc.strerror or exc}") from None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except _EncryptedKey:
        raise ValueError(
            f"{TLS_KEY_SETTING}: the private key in {key or cert} is encrypted; give an unencrypted key "
            "file that only the gateway's user can read"
        ) from None
    except ssl.SSLError as exc:
        detail = f" ({exc.reason.lower().replace('_', ' ')})" if exc.reason else ""
        if key is None:
            raise ValueError(
                f"{TLS_CERT_SETTING}: {cert} does not hold a PEM certificate and its private key{detail}; "
                f"give the key with {TLS_KEY_SETTING} unless the certificate file holds it"
            ) from None
        raise ValueError(
            f"{TLS_CERT_SETTING} and {TLS_KEY_SETTING}: {cert} and {key} are not a PEM certificate and "
            f"its private key{detail}"
        ) from None


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests per minute: invoke per function, deploy and management writes per user (seed defaults)."""

    invoke_per_min: float = 10_000.0
    deploy_per_min: float = 10.0
    manage_per_min: float = 20.0

    @classmethod
    def from_env(cls) -> RateLimits:
        return cls(
            invoke_per_min=_float_env("DORMANT_RATE_INVOKE_PER_MIN", 10_000.0),
            deploy_per_min=_float_env("DORMANT_RATE_DEPLOY_PER_MIN", 10.0),
            manage_per_min=_float_env("DORMANT_RATE_MANAGE_PER_MIN", 20.0),
        )


@dataclass(frozen=True, slots=True)
class AsyncSettings:
    """Async invocations: attempts, exponential backoff (base * 2**n, capped) and worker batch size."""

    max_attempts: int = 3
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    batch: int = 16

    @classmethod
    def from_env(cls) -> AsyncSettings:
        return cls(
            max_attempts=int(_float_env("DORMANT_ASYNC_MAX_ATTEMPTS", 3)),
            backoff_base_s=_float_env("DORMANT_ASYNC_BACKOFF_S", 1.0),
            backoff_max_s=_float_env("DORMANT_ASYNC_BACKOFF_MAX_S", 300.0),
        )


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The HTTP server's bounds (see ``server.py``): request read time, open connections, keep-alive."""

    read_timeout_s: float = 10.0
    max_connections: int = 1000
    keep_alive_s: float = 5.0

    @classmethod
    def from_env(cls) -> ServerLimits:
        return cls(
            read_timeout_s=_float_env("DORMANT_GATEWAY_READ_TIMEOUT_S", 10.0),
            max_connections=int(_float_env("DORMANT_GATEWAY_MAX_CONNECTIONS", 1000)),
            keep_alive_s=_float_env("DORMANT_GATEWAY_KEEP_ALIVE_S", 5.0),
        )


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    broker_url: str = DEFAULT_BROKER_URL
    catalog_url: str = DEFAULT_CATALOG_URL
    layer_store: Path = field(default_factory=Path)
    state_dir: Path = field(default_factory=default_state_dir)
    oidc_issuer: str | None = None
    """Production issuer; None means the dev issuer (a key in the state dir, JWKS served here)."""
    oidc_jwks_url: str | None = None
    oidc_audience: str = DEFAULT_AUDIENCE
    gateway_client_id: str | None = None
    """The gateway's own OAuth 2 client at the issuer (client credentials), for the calls it makes by
    itself: cron ticks, queue messages, async invocations (``auth/identity.py``)."""
    gateway_client_secret: str | None = field(default=None, repr=False)
    rabbitmq_url: str | None = None
    """RabbitMQ for queue triggers; None refuses queue triggers (never a default: a machine's own
    RabbitMQ must not be used by accident)."""
    nats_url: str | None = field(default=None, repr=False)
    """NATS with JetStream for stream triggers; None refuses stream triggers (never a default: a machine's
    own NATS on :4222 must not be used by accident). Not in the repr: it may hold credentials."""
    rate_limits: RateLimits = field(default_factory=RateLimits)
    async_settings: AsyncSettings = field(default_factory=AsyncSettings)
    server: ServerLimits = field(default_factory=ServerLimits)
    function_retention_s: float = DEFAULT_RETENTION_S
    """How long a deleted function can be restored (``DORMANT_FUNCTION_RETENTION_S``, default 30 days);
    then a worker purges it."""
    replica_id: str = ""
    workers: bool = True
    """Run the async-invocation worker, the cron scheduler and the queue and stream consumers here."""
    tls_cert: Path | None = None
    """PEM certificate (chain) to serve HTTPS with; None serves plain HTTP."""
    tls_key: Path | None = None
    """PEM private key of ``tls_cert``; None when the certificate file holds the key too."""
    hsts_max_age_s: int = DEFAULT_HSTS_MAX_AGE_S
    """``Strict-Transport-Security: max-age`` on HTTPS responses (``hsts.py``); 0 sends no header."""

    @classmethod
    def from_env(cls, **overrides: object) -> GatewayConfig:
        """Raises ValueError, naming the setting, for TLS files the server cannot use or an HSTS value
        that is not a whole number of seconds or that could not take effect (no HTTPS)."""
        settings = Settings.from_env()
        hsts = _hsts_env()
        config = cls(
            port=int(os.environ.get("DORMANT_GATEWAY_PORT") or DEFAULT_PORT),
            broker_url=settings.broker_url,
            catalog_url=settings.catalog_url,
            layer_store=settings.layer_store,
            state_dir=default_state_dir(),
            oidc_issuer=_production_issuer(os.environ.get("DORMANT_OIDC_ISSUER")),
            oidc_jwks_url=os.environ.get("DORMANT_OIDC_JWKS_URL") or None,
            oidc_audience=os.environ.get("DORMANT_OIDC_AUDIENCE") or DEFAULT_AUDIENCE,
            gateway_client_id=os.environ.get("DORMANT_GATEWAY_CLIENT_ID") or None,
            gateway_client_secret=os.environ.get("DORMANT_GATEWAY_CLIENT_SECRET") or None,
            rabbitmq_url=os.environ.get("DORMANT_RABBITMQ_URL") or None,
            nats_url=os.environ.get("DORMANT_NATS_URL") or None,
            rate_limits=RateLimits.from_env(),
            async_settings=AsyncSettings.from_env(),
            server=ServerLimits.from_env(),
            function_retention_s=_float_env("DORMANT_FUNCTION_RETENTION_S", DEFAULT_RETENTION_S),
            tls_cert=_path_env("DORMANT_GATEWAY_TLS_CERT"),
            tls_key=_path_env("DORMANT_GATEWAY_TLS_KEY"),
            hsts_max_age_s=DEFAULT_HSTS_MAX_AGE_S if hsts is None else hsts,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        config = replace(config, **given)  # type: ignore[arg-type]
        check_tls_files(config.tls_cert, config.tls_key)
        if not config.function_retention_s > 0:
            retention = config.function_retention_s
            raise ValueError(f"DORMANT_FUNCTION_RETENTION_S must be more than 0 seconds, not {retention:g}")
        if config.hsts_max_age_s < 0:
            raise ValueError(f"{HSTS_SETTING} must be 0 or more seconds, not {config.hsts_max_age_s}")
        if not config.tls and config.hsts_max_age_s > 0 and (hsts is not None or "hsts_max_age_s" in given):
            # Accepting it would do nothing: the header is sent over HTTPS only (RFC 6797 section 7.2).
            raise ValueError(f"{HSTS_SETTING} is set, but HSTS needs HTTPS: give {TLS_CERT_SETTING} too")
        return config

    @property
    def tls(self) -> bool:
        """True when the gateway serves HTTPS."""
        return self.tls_cert is not None

    @property
    def issuer(self) -> str:
        return self.oidc_issuer or DEV_ISSUER

    @property
    def dev_auth(self) -> bool:
        """True when tokens are signed by the local dev key (no production issuer configured)."""
        return self.oidc_issuer is None and self.oidc_jwks_url is None
