"""Minting tokens with the dev key (``dormant token``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey

from .keys import ALGORITHM, DevKey
from .roles import Role


def mint_token(
    key: DevKey, *, sub: str, roles: Iterable[Role], ttl_s: float, issuer: str, audience: str
) -> str:
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": sub,
        "roles": sorted(role.value for role in roles),
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl_s),
        "jti": uuid.uuid4().hex,
    }
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return jwt.encode(
        {"alg": ALGORITHM, "kid": key.kid}, claims, ECKey.import_key(pem), algorithms=[ALGORITHM]
    )
