"""The benchmark's token issuer: an RSA-2048 key that signs RS256 access tokens shaped like the dev
identity provider's (nanoidp), trusted by the benchmarked runtime through an inline key set
(``DORMANT_OIDC_JWKS``).

Why not ask nanoidp for every token: it mints about 16 tokens a second on this machine (one HTTP
request each through its management API), and a run with a new token per call needs some 24,000 of
them. What a runtime pays per call does not depend on who signed: the same algorithm (RS256), the same
key size (2048 bits, nanoidp's), the same claims (so the same JSON to parse) and the same
``TokenVerifier`` code. ``bench/verify_micro.py`` checks that claim by verifying tokens minted by the
real provider beside these.

The private key is written to a file (mode 0600) so the load-generator process can sign its own tokens
before it starts timing.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

ISSUER = "https://issuer.bench.dormant.invalid"
AUDIENCE = "dormant"
ALGORITHM = "RS256"
KEY_BITS = 2048
EMAIL_CLAIM = "attributes.email"
"""Where nanoidp puts the email, so the runtime reads the same claim path it reads in the dev mesh."""


class BenchIssuer:
    """Signs tokens with one RSA key; ``create`` makes the key, ``load`` reads it back in another process."""

    def __init__(self, key: RSAKey) -> None:
        self._key = key
        self.kid = key.thumbprint()

    @classmethod
    def create(cls, key_file: Path) -> BenchIssuer:
        key = RSAKey.generate_key(KEY_BITS, private=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as out:
            out.write(key.as_pem(private=True))
        return cls(key)

    @classmethod
    def load(cls, key_file: Path) -> BenchIssuer:
        return cls(RSAKey.import_key(key_file.read_bytes()))

    def jwks(self) -> dict[str, Any]:
        public = {**self._key.as_dict(private=False), "kid": self.kid, "use": "sig", "alg": ALGORITHM}
        return {"keys": [public]}

    def trust_env(self) -> dict[str, str]:
        """What a runtime needs to verify this issuer's tokens (``dormant_auth.IssuerConfig.from_env``)."""
        return {
            "DORMANT_OIDC_ISSUER": ISSUER,
            "DORMANT_OIDC_AUDIENCE": AUDIENCE,
            "DORMANT_OIDC_JWKS": json.dumps(self.jwks()),
            "DORMANT_OIDC_EMAIL_CLAIM": EMAIL_CLAIM,
        }

    def token(self, user: str = "bencher", *, ttl_s: int = 3600) -> str:
        """A new access token (its own ``jti``, so never equal to an earlier one)."""
        now = int(time.time())
        claims = {
            "jti": str(uuid.uuid4()),
            "iss": ISSUER,
            "sub": user,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "roles": ["bench"],
            "tenant": "default",
            "attributes": {"email": f"{user}@example.com"},
            "authorities": ["ROLE_BENCH"],
            "client_id": "dormant-cli",
            "token_use": "access",
        }
        header = {"alg": ALGORITHM, "kid": self.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self._key, algorithms=[ALGORITHM])

    def tokens(self, count: int) -> list[str]:
        return [self.token() for _ in range(count)]
