"""The caller of a gateway request: ``dormant_auth`` verifies the bearer token (one implementation for
the gateway and the runtimes: JWKS discovery, bounded refresh on an unknown ``kid`` so key rotation needs
no restart, a cache of verified tokens); this module turns the verified user into a ``Principal`` with
the gateway's roles."""

from __future__ import annotations

from dormant.errors import Unauthenticated
from dormant_auth import IssuerConfig, TokenVerifier

from .principal import Principal
from .roles import parse_roles


class PrincipalVerifier:
    """``Authorization: Bearer <token>`` → ``Principal``, or ``Unauthenticated``."""

    def __init__(self, config: IssuerConfig) -> None:
        self.config = config
        self._tokens = TokenVerifier(config)

    async def close(self) -> None:
        await self._tokens.close()

    async def verify(self, authorization: str | None) -> Principal:
        user = await self._tokens.verify(authorization)
        if user.user_id is None:
            raise Unauthenticated("the bearer token names no subject")
        return Principal(sub=user.user_id, roles=parse_roles(list(user.roles)))
