"""Registry credentials and the distribution spec's authentication challenges.

Credentials come from ``DORMANT_REGISTRY_USERNAME`` and ``DORMANT_REGISTRY_PASSWORD`` (both or neither),
else from docker's ``config.json`` (``$DOCKER_CONFIG/config.json``, else ``~/.docker/config.json``): the
``auths`` entry of the registry's host, with ``auth`` (base64 ``user:password``) or ``username`` and
``password``. Credential helpers (``credsStore``, ``credHelpers``) and identity tokens are programs and
OAuth flows Dormant does not run: when one is all the configuration has, an authentication failure says
so. A password is never in a ``repr``, a log line or an error.

A registry asks for credentials with ``401`` and ``WWW-Authenticate``: ``Basic realm=...`` (send them on
every request), or ``Bearer realm=...,service=...,scope=...`` (the token flow: GET the realm with the
service and scopes, with the credentials as basic auth when there are any, and send the token it answers
until it expires).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

USERNAME_ENV = "DORMANT_REGISTRY_USERNAME"
PASSWORD_ENV = "DORMANT_REGISTRY_PASSWORD"
DEFAULT_TOKEN_LIFETIME_S = 60.0
"""The token spec's default when the token service gives no ``expires_in``."""
TOKEN_EARLY_S = 10.0
"""A cached token is renewed this long before it expires."""


@dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = ""
    """Where they came from, for messages: the variable names or the config file."""

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True, slots=True)
class CredentialLookup:
    """The credentials for one registry host, or why there are none."""

    credentials: Credentials | None
    note: str = ""
    """Said with an authentication failure when ``credentials`` is None (e.g. a credential helper)."""


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return Path(base) / "config.json" if base else Path.home() / ".docker" / "config.json"


def _host_key(entry: str) -> str:
    """``https://host:5000/v1/`` -> ``host:5000``: the form docker's ``auths`` keys come in."""
    text = entry.strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)
    return text.split("/", 1)[0]


def lookup_credentials(host: str) -> CredentialLookup:
    """The credentials for ``host`` (``host[:port]``). ``ValueError`` when only one of the two
    variables is set, or ``config.json`` is unreadable."""
    username = os.environ.get(USERNAME_ENV)
    password = os.environ.get(PASSWORD_ENV)
    if username or password:
        if not (username and password):
            raise ValueError(f"set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither")
        return CredentialLookup(Credentials(username, password, f"{USERNAME_ENV}/{PASSWORD_ENV}"))
    path = docker_config_path()
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return CredentialLookup(None)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read docker's {path}: {type(exc).__name__}") from None
    if not isinstance(config, dict):
        raise ValueError(f"docker's {path} is not a JSON object")
    wanted = _host_key(host)
    auths = config.get("auths")
    entry = None
    if isinstance(auths, dict):
        entry = next((v for k, v in auths.items() if _host_key(str(k)) == wanted), None)
    if isinstance(entry, dict):
        found = _from_entry(entry, str(path))
        if found is not None:
            return CredentialLookup(found)
        if entry.get("identitytoken"):
            return CredentialLookup(
                None, f"{path} has an identity token for {host}, which Dormant does not use"
            )
    helpers = config.get("credHelpers")
    if isinstance(helpers, dict) and any(_host_key(str(k)) == wanted for k in helpers):
        return CredentialLookup(
            None, f"{path} names a credential helper for {host}, which Dormant does not run"
        )
    if config.get("credsStore"):
        return CredentialLookup(
            None, f"{path} keeps credentials in a credential store, which Dormant does not run"
        )
    return CredentialLookup(None)


def _from_entry(entry: dict[str, object], source: str) -> Credentials | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            decoded = base64.b64decode(auth, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"docker's {source}: an 'auth' entry is not base64 user:password") from None
        user, sep, password = decoded.partition(":")
        if sep and user:
            return Credentials(user, password, source)
    name, secret = entry.get("username"), entry.get("password")
    if isinstance(name, str) and isinstance(secret, str) and name:
        return Credentials(name, secret, source)
    return None


@dataclass(frozen=True, slots=True)
class Challenge:
    """One ``WWW-Authenticate`` challenge: ``scheme`` (lowercase) and its parameters."""

    scheme: str
    params: dict[str, str]


_PARAM_RE = re.compile(r'\s*([A-Za-z][A-Za-z0-9_.-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


def parse_challenge(header: str) -> Challenge | None:
    """The challenge of a ``WWW-Authenticate`` header (``Bearer realm="...",service="..."``), or None."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    pos = 0
    rest = rest.strip()
    while pos < len(rest):
        match = _PARAM_RE.match(rest, pos)
        if match is None:
            break
        value = match[2] if match[2] is not None else match[3]
        params[match[1].lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = match.end()
    return Challenge(scheme.lower(), params)


@dataclass(slots=True)
class Token:
    value: str = field(repr=False)
    expires_at: float

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at - TOKEN_EARLY_S


def token_from_response(body: object) -> Token:
    """The token of a token service's JSON answer (``token`` or ``access_token``, ``expires_in``)."""
    if not isinstance(body, dict):
        raise ValueError("the token service did not answer a JSON object")
    value = body.get("token") or body.get("access_token")
    if not isinstance(value, str) or not value:
        raise ValueError("the token service answered no token")
    lifetime = body.get("expires_in")
    seconds = (
        float(lifetime)
        if isinstance(lifetime, int | float) and not isinstance(lifetime, bool) and lifetime > 0
        else DEFAULT_TOKEN_LIFETIME_S
    )
    return Token(value, time.monotonic() + seconds)
