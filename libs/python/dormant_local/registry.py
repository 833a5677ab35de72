"""A private OCI registry (the CNCF distribution server) for the tests: its own port, storage and config.

Uses Debian's ``docker-registry`` package (``deploy/bootstrap.sh`` installs it and keeps its system
service, which would listen on :5000, disabled) or ``$DORMANT_REGISTRY_SERVER``; never a registry already
running on the machine. Listens on 127.0.0.1 only, plain HTTP (the layer store allows ``oci+http://``
for a loopback host). Optional authentication, as a production registry has it: ``htpasswd`` users
(basic auth; the file holds bcrypt hashes, the only kind distribution reads) or ``token`` (the bearer
token flow: a token service the caller runs signs JWTs with a key whose certificate is given here).
The storage directory survives ``restart``: the same port, the same blobs.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

from .ports import free_port, port_accepts, wait_until
from .processes import ChildProcess, ServerProcess

INSTALL_HINT = "apt-get install docker-registry"
SERVER_ENV = "DORMANT_REGISTRY_SERVER"
_SEARCH_PATH = ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/usr/local/sbin")


class RegistryNotInstalled(RuntimeError):
    """No distribution server (``docker-registry``) on this machine."""

    def __init__(self) -> None:
        super().__init__(
            f"the OCI registry server is not installed; install it with `{INSTALL_HINT}` (or run"
            f" deploy/bootstrap.sh), or set {SERVER_ENV} to the executable"
        )


def find_registry_server() -> str:
    """Path of the distribution server: ``$DORMANT_REGISTRY_SERVER``, then PATH, then the usual dirs."""
    override = os.environ.get(SERVER_ENV)
    if override:
        if os.access(override, os.X_OK):
            return override
        raise RegistryNotInstalled()
    found = shutil.which("docker-registry") or shutil.which(
        "docker-registry", path=os.pathsep.join(_SEARCH_PATH)
    )
    if found is None:
        raise RegistryNotInstalled()
    return found


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash of ``password`` for an htpasswd file: the ``bcrypt`` package when installed, else the
    C library's crypt (glibc's libxcrypt does bcrypt; Python's ``crypt`` module exists up to 3.12)."""
    try:
        import bcrypt  # type: ignore[import-not-found,unused-ignore]  # lazy: optional package

        hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10))
        return hashed.decode()
    except ImportError:
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt  # lazy: deprecated module, only when bcrypt is missing
        except ImportError:
            raise RuntimeError("htpasswd needs bcrypt: pip install bcrypt") from None
        hashed_text = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
    if not hashed_text or not hashed_text.startswith("$2"):
        raise RuntimeError("this C library's crypt() has no bcrypt: pip install bcrypt")
    return hashed_text


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """Bearer token authentication: the registry sends clients to ``realm`` for tokens of ``service``,
    signed by ``issuer`` with the key of the PEM certificate(s) in ``root_cert_bundle``."""

    realm: str
    service: str
    issuer: str
    root_cert_bundle: Path


class RegistryServer(ServerProcess):
    """The distribution server on 127.0.0.1, everything under ``base``; ``store_url`` names it for
    ``DORMANT_LAYER_STORE``. ``htpasswd``: {user: password} for basic auth; ``token``: bearer auth."""

    stop_grace_s = 10.0

    def __init__(
        self,
        base: Path,
        *,
        htpasswd: dict[str, str] | None = None,
        token: TokenAuth | None = None,
    ) -> None:
        super().__init__()
        if htpasswd and token:
            raise ValueError("a registry authenticates with htpasswd or with tokens, not both")
        self.base = Path(base)
        self.port = free_port()
        self.htpasswd = dict(htpasswd or {})
        self.token = token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def store_url(self, prefix: str = "dormant") -> str:
        """The layer store location of this registry (``oci+http://127.0.0.1:<port>/<prefix>``)."""
        return f"oci+http://127.0.0.1:{self.port}" + (f"/{prefix}" if prefix else "")

    @property
    def storage_dir(self) -> Path:
        return self.base / "storage"

    def blob_file(self, digest: str) -> Path:
        """Where the filesystem driver keeps the blob ``sha256:<hex>`` (to corrupt it in a test)."""
        hex_digest = digest.removeprefix("sha256:")
        return self.storage_dir / "docker/registry/v2/blobs/sha256" / hex_digest[:2] / hex_digest / "data"

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log:",
            "  level: info",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {self.storage_dir}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            # Fixed per server: upload sessions started before a restart stay valid after it.
            f"  secret: {self._secret()}",
            "  headers:",
            "    X-Content-Type-Options: [nosniff]",
        ]
        if self.htpasswd:
            lines += [
                "auth:",
                "  htpasswd:",
                "    realm: dormant-test",
                f"    path: {self.base / 'htpasswd'}",
            ]
        elif self.token is not None:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token.realm}",
                f"    service: {self.token.service}",
                f"    issuer: {self.token.issuer}",
                f"    rootcertbundle: {self.token.root_cert_bundle}",
            ]
        return "\n".join(lines) + "\n"

    def _secret(self) -> str:
        path = self.base / "http-secret"
        if not path.exists():
            path.write_text(secrets.token_hex(16))
        return path.read_text().strip()

    async def start(self) -> None:
        server = find_registry_server()
        self.base.mkdir(parents=True, exist_ok=True)
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        if self.htpasswd:
            entries = "".join(f"{user}:{bcrypt_hash(pw)}\n" for user, pw in sorted(self.htpasswd.items()))
            (self.base / "htpasswd").write_text(entries)
        config = self.base / "config.yml"
        config.write_text(self._config())
        child = ChildProcess(
            [server, "serve", str(config)], name="docker-registry", log_file=self.base / "registry.log"
        )
        self._child = child
        child.spawn()
        await wait_until(
            self._answers,
            within=30,
            interval=0.05,
            failed=lambda: None if child.running else f"docker-registry exited:\n{child.log_tail()}",
        )

    def _answers(self) -> bool:
        """The API base answers (200, or 401 when authentication is on)."""
        if not port_accepts(self.port):
            return False
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/v2/")
            return connection.getresponse().status in (200, 401)
        except OSError:
            return False
        finally:
            connection.close()
