"""Helpers for tests against a real OCI registry (``dormant_local.registry.RegistryServer``).

- ``HoldingRelay``: a TCP relay in front of the registry that can stop forwarding a response part-way
  (``hold_after`` bytes from the server on one connection), so a test can restart the registry while a
  pull is in progress, then ``release`` (the client sees its connection break mid-body). It records
  what the clients sent, to check a resumed download asked for a ``Range``.
- ``TokenService``: the token service of the distribution spec's bearer flow (``GET /token?service=
  &scope=``), checking basic credentials and signing RS256 JWTs with a certificate the registry trusts
  (``x5c``). It grants every action asked for, to the one user it knows.
- ``random_layer``: a gzip tar with an incompressible file of a given size.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import gzip
import io
import json
import os
import socket
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID


def random_layer(size: int, name: str = "python/blob.bin", extra: dict[str, bytes] | None = None) -> bytes:
    """A gzip tar holding ``size`` random bytes (plus ``extra`` files): about ``size`` bytes compressed."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for path, data in {name: os.urandom(size), **(extra or {})}.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


class HoldingRelay:
    """Relays 127.0.0.1:``port`` to 127.0.0.1:``target_port``; see the module doc."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.hold_after: int | None = None
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        self.refused = 0
        """Connections the relay closed at once because the registry was down."""
        self.sent: list[bytes] = []
        """What each connection's client sent (its requests), in connection order."""
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self, after: int) -> None:
        """Hold the next connection whose response bytes pass ``after``."""
        self.held.clear()
        self._release.clear()
        self.hold_after = after

    def release(self) -> None:
        """Close the held connection (its client sees it break) and forward everything from now on."""
        self.hold_after = None
        self._release.set()

    def requests_with(self, text: bytes) -> int:
        with self._lock:
            return sum(1 for sent in self.sent if text.lower() in sent.lower())

    def close(self) -> None:
        self._closed = True
        self._release.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()  # the registry is down: the client sees its connection closed at once
                with self._lock:
                    self.refused += 1
                continue
            upstream.settimeout(None)
            with self._lock:
                index = len(self.sent)
                self.sent.append(b"")
                self._sockets += [client, upstream]
            threading.Thread(target=self._upstream, args=(client, upstream, index), daemon=True).start()
            threading.Thread(target=self._downstream, args=(upstream, client), daemon=True).start()

    def _upstream(self, client: socket.socket, upstream: socket.socket, index: int) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                with self._lock:
                    self.sent[index] += data
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _downstream(self, upstream: socket.socket, client: socket.socket) -> None:
        forwarded = 0
        try:
            while data := upstream.recv(65536):
                limit = self.hold_after
                if limit is not None and forwarded + len(data) > limit:
                    client.sendall(data[: max(0, limit - forwarded)])
                    self.held.set()
                    self._release.wait()
                    break
                client.sendall(data)
                forwarded += len(data)
        except OSError:
            pass
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class TokenService:
    """A token service on 127.0.0.1 for ``user``/``password``; ``cert_file`` is what the registry trusts."""

    base: Path
    user: str
    password: str
    service: str = "dormant-test-registry"
    issuer: str = "dormant-test-issuer"
    requests: list[dict[str, Any]] = field(default_factory=list)
    """Each token request: ``scopes``, ``authorized`` (right credentials), ``status``."""

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dormant test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.cert_file = self.base / "token-signer.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                service._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(request.path).query)
        scopes = query.get("scope", [])
        expected = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        authorized = request.headers.get("Authorization") == expected
        status = 200 if authorized else 401
        self.requests.append({"scopes": scopes, "authorized": authorized, "status": status})
        if not authorized:
            request.send_response(401)
            request.send_header("Content-Length", "0")
            request.end_headers()
            return
        body = json.dumps({"token": self._token(scopes), "expires_in": 300}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def _token(self, scopes: list[str]) -> str:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a]})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        claims = {
            "iss": self.issuer,
            "sub": self.user,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"
