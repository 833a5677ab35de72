"""Where a layer store is: a directory, or an OCI registry named by ``oci://host[:port][/prefix]``.

``DORMANT_LAYER_STORE`` (and every ``--layer-store``) takes either. A registry location is
``oci://`` (HTTPS, certificates verified; ``DORMANT_REGISTRY_CA_FILE`` adds a private CA) or
``oci+http://`` (plain HTTP: only for a loopback host, or anywhere with ``DORMANT_REGISTRY_INSECURE=1``).
It never carries credentials (it is shown in logs and written to the dev mesh's record): they come from
``DORMANT_REGISTRY_USERNAME``/``DORMANT_REGISTRY_PASSWORD`` or docker's ``config.json`` (``auth.py``).

Image names map to repositories under the prefix: a dependency layer ``dormant-deps-<hash>`` to
``deps/<hash>``, a shared layer ``dormant-layer-<name>`` to ``layers/<name>``, any other (a service)
``<name>`` to ``apps/<name>``; ``name:tag`` names that tag of the repository, a bare name its ``latest``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

REGISTRY_SCHEMES = {"oci": "https", "oci+https": "https", "oci+http": "http"}
INSECURE_ENV = "DORMANT_REGISTRY_INSECURE"
DEPENDENCY_IMAGE_PREFIX = "dormant-deps-"
"""Names a dependency layer image (``dormant_codegen.dependencies``)."""
SHARED_LAYER_IMAGE_PREFIX = "dormant-layer-"
"""Names a shared layer image (``dormant layer publish``)."""
DEFAULT_TAG = "latest"

# A pathlib.Path made from a location collapses "//" into "/" (settings and configs hold the store as a
# Path), so "oci:/host/prefix" is read as "oci://host/prefix": a relative directory named "oci:" is not a
# store anyone means.
_LOCATION_RE = re.compile(r"^(?P<scheme>oci(?:\+https?)?):/{1,2}(?P<rest>[^/].*)$", re.ASCII)
_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$", re.ASCII)
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", re.ASCII)
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True, slots=True)
class RegistryLocation:
    """A registry (``host`` with its port, if any) and the repository ``prefix`` under it."""

    scheme: str
    """``https`` or ``http``."""
    host: str
    prefix: str = ""

    def __str__(self) -> str:
        kind = "oci" if self.scheme == "https" else "oci+http"
        return f"{kind}://{self.host}" + (f"/{self.prefix}" if self.prefix else "")

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def repository(self, name: str) -> tuple[str, str]:
        """(repository, tag) of image ``name`` (``name`` or ``name:tag``); ``ValueError`` for a name that is
        no valid repository path component."""
        base, sep, tag = name.partition(":")
        if sep and not _TAG_RE.match(tag):
            raise ValueError(f"image name {name!r}: {tag!r} is not a valid registry tag")
        if base.startswith(DEPENDENCY_IMAGE_PREFIX):
            kind, leaf = "deps", base.removeprefix(DEPENDENCY_IMAGE_PREFIX)
        elif base.startswith(SHARED_LAYER_IMAGE_PREFIX):
            kind, leaf = "layers", base.removeprefix(SHARED_LAYER_IMAGE_PREFIX)
        else:
            kind, leaf = "apps", base
        if not _COMPONENT_RE.match(leaf):
            raise ValueError(
                f"image name {name!r} cannot be a registry repository: lowercase letters and digits,"
                " separated by '.', '_' or '-'"
            )
        path = f"{kind}/{leaf}"
        return (f"{self.prefix}/{path}" if self.prefix else path), (tag if sep else DEFAULT_TAG)


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (with or without a port)."""
    bare = host
    if bare.startswith("["):
        bare = bare[1:].partition("]")[0]
    elif bare.count(":") == 1:
        bare = bare.partition(":")[0]
    if bare.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(bare).is_loopback
    except ValueError:
        return False


def insecure_allowed() -> bool:
    """``DORMANT_REGISTRY_INSECURE`` is set to a true value: plain HTTP to any registry host."""
    return os.environ.get(INSECURE_ENV, "").strip().lower() in _TRUE


def parse_registry_location(text: str) -> RegistryLocation | None:
    """The registry that ``text`` names, or None when it names a directory.

    ``ValueError`` for a registry location that is malformed, carries credentials, or asks for plain
    HTTP to a host that is not loopback without ``DORMANT_REGISTRY_INSECURE``."""
    match = _LOCATION_RE.match(text.strip())
    if match is None:
        return None
    scheme = REGISTRY_SCHEMES[match["scheme"]]
    text = f"{match['scheme']}://{match['rest']}"  # as written, before a Path collapsed its "//"
    parts = urlsplit(f"//{match['rest']}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError(
            "a registry location carries no credentials: set DORMANT_REGISTRY_USERNAME and"
            " DORMANT_REGISTRY_PASSWORD, or log in with docker (config.json)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"registry location {text!r}: no query or fragment is allowed")
    host = parts.netloc
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"registry location {text!r} has an invalid port") from None
    if not parts.hostname or (port is not None and not 0 < port < 65536):
        raise ValueError(f"registry location {text!r} names no host")
    prefix = parts.path.strip("/")
    for component in prefix.split("/") if prefix else []:
        if not _COMPONENT_RE.match(component):
            raise ValueError(
                f"registry location {text!r}: {component!r} is not a valid repository path component"
                " (lowercase letters and digits, separated by '.', '_' or '-')"
            )
    if scheme == "http" and not is_loopback(host) and not insecure_allowed():
        raise ValueError(
            f"registry location {text!r} asks for plain HTTP to {host}, which is not this machine: use"
            f" oci:// (HTTPS), or set {INSECURE_ENV}=1 to allow it (credentials then travel in clear)"
        )
    return RegistryLocation(scheme, host.lower(), prefix)
