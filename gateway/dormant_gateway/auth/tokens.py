"""Minting tokens with the dev key (``dormant token``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import jwt

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
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid})
