"""The dev signing key: an EC P-256 key made on first use and kept in the state directory (mode 0600).

Tokens minted by ``dormant token`` are signed with it; the gateway serves its public half as a JWKS.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

KEY_FILE = "dev-signing-key.pem"
ALGORITHM = "ES256"


def _b64(number: int) -> str:
    raw = number.to_bytes(32, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class DevKey:
    private_key: ec.EllipticCurvePrivateKey

    def public_jwk(self) -> dict[str, Any]:
        numbers = self.private_key.public_key().public_numbers()
        jwk = {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x), "y": _b64(numbers.y)}
        return {**jwk, "kid": self.kid, "use": "sig", "alg": ALGORITHM}

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint of the public key."""
        numbers = self.private_key.public_key().public_numbers()
        canonical = json.dumps(
            {"crv": "P-256", "kty": "EC", "x": _b64(numbers.x), "y": _b64(numbers.y)},
            separators=(",", ":"),
            sort_keys=True,
        )
        digest = hashlib.sha256(canonical.encode()).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}


def key_path(state_dir: Path) -> Path:
    return state_dir / "gateway" / KEY_FILE


def load_or_create_dev_key(state_dir: Path) -> DevKey:
    """Read the dev key, or create it atomically (several processes may race; one file wins)."""
    path = key_path(state_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = path.with_name(f".{KEY_FILE}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        try:
            os.link(tmp, path)  # fails if another process created the key first
        except FileExistsError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} does not hold an EC private key")
    return DevKey(key)
