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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

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


BROKER_CA_FILE_ENV = "DORMANT_BROKER_CA_FILE"
"""PEM file of the CA(s) that signed the broker's certificate (``mqtts://`` only); unset: the system's."""
BROKER_CERT_FILE_ENV = "DORMANT_BROKER_CERT_FILE"
"""PEM client certificate presented to a broker that asks for one (mutual TLS, ``mqtts://`` only)."""
BROKER_KEY_FILE_ENV = "DORMANT_BROKER_KEY_FILE"
"""PEM private key of ``DORMANT_BROKER_CERT_FILE`` (unset: the key is in the certificate file)."""
_TLS_FILE_ENVS = (BROKER_CA_FILE_ENV, BROKER_CERT_FILE_ENV, BROKER_KEY_FILE_ENV)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where and as whom to connect: ``parse_broker_url``'s result. The password is never in its repr."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    """``$DORMANT_BROKER_CA_FILE`` for an ``mqtts://`` URL: the CAs the broker's certificate is checked
    against (None: the system's trust store)."""
    cert_file: str | None = None
    """``$DORMANT_BROKER_CERT_FILE`` for an ``mqtts://`` URL: a client certificate, for mutual TLS."""
    key_file: str | None = None
    """``$DORMANT_BROKER_KEY_FILE``: the client certificate's key, when not in ``cert_file``."""


BROKER_URL_TLS_PARAMS = {
    "cafile": BROKER_CA_FILE_ENV,
    "certfile": BROKER_CERT_FILE_ENV,
    "keyfile": BROKER_KEY_FILE_ENV,
}
"""Query parameters of an ``mqtts://`` URL naming its TLS files (mosquitto_pub's ``--cafile``, ``--cert``,
``--key``; libpq's ``sslrootcert`` in a DSN is the same idea), and the variable each one overrides."""


def parse_broker_url(url: str, *, environ: Mapping[str, str] | None = None) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:port]`` (``mqtts://`` for TLS, default ports 1883 / 8883).

    User name and password are percent-decoded (``BrokerAccount.url`` encodes them: a password may hold
    any character). For ``mqtts://`` the TLS files come from the URL's query
    (``?cafile=PATH&certfile=PATH&keyfile=PATH``, so one string says everything, as ``dormant dev
    --tls`` writes it) or else from ``environ`` (the process environment): ``DORMANT_BROKER_CA_FILE``,
    ``DORMANT_BROKER_CERT_FILE`` and ``DORMANT_BROKER_KEY_FILE``. With a plain ``mqtt://`` URL any of
    them is a ``ValueError`` (they would be ignored), as is an unknown or repeated query parameter or a
    path. No error message holds the URL's password.
    """
    environ = os.environ if environ is None else environ
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError(f"unsupported broker URL scheme {parts.scheme!r} (use mqtt:// or mqtts://)")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the broker URL has no valid port: {redact_url(url)}") from None
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError(f"a broker URL has no path or fragment: {redact_url(url)}")
    tls_files = {name: environ.get(name) or None for name in _TLS_FILE_ENVS}
    for param, value in _url_tls_params(parts.query, url).items():
        tls_files[BROKER_URL_TLS_PARAMS[param]] = value
    if not tls and any(tls_files.values()):
        given = ", ".join(name for name, value in tls_files.items() if value)
        raise ValueError(
            f"{given} set (in the environment or as the URL's cafile/certfile/keyfile), but the broker URL "
            f"{redact_url(url)} is not TLS: use mqtts:// (or unset them)"
        )
    if tls_files[BROKER_KEY_FILE_ENV] and not tls_files[BROKER_CERT_FILE_ENV]:
        raise ValueError(f"{BROKER_KEY_FILE_ENV} (keyfile) is set without {BROKER_CERT_FILE_ENV} (certfile)")
    return BrokerAddress(
        host=parts.hostname or "127.0.0.1",
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username is not None else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=tls,
        ca_file=tls_files[BROKER_CA_FILE_ENV],
        cert_file=tls_files[BROKER_CERT_FILE_ENV],
        key_file=tls_files[BROKER_KEY_FILE_ENV],
    )


def _url_tls_params(query: str, url: str) -> dict[str, str]:
    """The TLS file parameters of a broker URL's query; ``ValueError`` for anything else in it."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"the broker URL's query is not name=value pairs: {redact_url(url)}") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name not in BROKER_URL_TLS_PARAMS:
            known = ", ".join(BROKER_URL_TLS_PARAMS)
            raise ValueError(f"unknown broker URL parameter {name!r} (known: {known})")
        if name in params:
            raise ValueError(f"the broker URL parameter {name!r} is given twice")
        if not value:
            raise ValueError(f"the broker URL parameter {name!r} is empty")
        params[name] = value
    return params


def with_tls_files(
    url: str, *, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> str:
    """``url`` (an ``mqtts://`` one) with its TLS files in the query, as ``parse_broker_url`` reads them."""
    values = {"cafile": ca_file, "certfile": cert_file, "keyfile": key_file}
    query = urlencode({name: value for name, value in values.items() if value is not None}, safe="/")
    return f"{url}?{query}" if query else url


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: what logs, errors and reprs show."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    authority_end = min(ends, default=len(rest))
    if "@" in rest[:authority_end]:
        userinfo, _, host = rest[:authority_end].rpartition("@")
        tail = rest[authority_end:]
    elif "@" in rest:
        # Not a valid URL (an unquoted '/', '?' or '#' in the password): hide up to the last '@'.
        userinfo, _, tail = rest.rpartition("@")
        host = ""
    else:
        return url
    if ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}{tail}"


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

    def __repr__(self) -> str:
        # Written out (not the dataclass's): the URLs may carry passwords.
        return (
            f"Settings(broker_url={redact_url(self.broker_url)!r}, "
            f"catalog_url={redact_url(self.catalog_url)!r}, layer_store={self.layer_store!r})"
        )

    @property
    def broker(self) -> BrokerAddress:
        return parse_broker_url(self.broker_url)
