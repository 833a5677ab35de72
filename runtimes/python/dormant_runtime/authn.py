"""Who is calling: the bearer token of a decoded call, verified into a ``UserContext`` before dispatch.

The token comes from the ``authorization`` user property (native form) or ``headers.authorization``
(envelope form); ``dormant.wire`` puts both in ``Call.headers``. It is taken out of the headers here, so
handler code sees the caller only as ``ctx.user`` (whose ``token`` field is kept out of ``repr``) and
never logs it by printing ``ctx.headers``.

What a service admits is decided by the SDK dispatcher (``Dispatcher.admit``: ``required`` refuses an
anonymous caller, ``roles`` refuse a caller without one of them); this module only turns the token into
a user. A token that is present is verified even where authentication is optional: a bad token is
``Unauthenticated``, never silently anonymous. Where authentication is ``off`` the token is dropped
unread. Verification itself (JWKS discovery and refresh, introspection, the cache of tokens already
verified) is ``dormant_auth.TokenVerifier``, shared with the gateway.
"""

from __future__ import annotations

from dormant import wire
from dormant.app import AuthMode
from dormant.context import ANONYMOUS, UserContext
from dormant.errors import Unauthenticated
from dormant_auth import IssuerConfig, TokenVerifier


class CallAuthenticator:
    """Verifies the token of each call for one service; ``verifier`` None: this runtime trusts no
    issuer, so every call that carries a token is refused and only anonymous calls can be admitted."""

    def __init__(self, mode: AuthMode, verifier: TokenVerifier | None) -> None:
        self.mode = mode
        self.verifier = verifier

    @classmethod
    def from_env(cls, mode: AuthMode) -> CallAuthenticator:
        """The issuer from ``DORMANT_OIDC_*`` (see ``IssuerConfig.from_env``); none needed when ``off``."""
        config = None if mode == "off" else IssuerConfig.from_env()
        return cls(mode, None if config is None else TokenVerifier(config))

    async def close(self) -> None:
        if self.verifier is not None:
            await self.verifier.close()

    async def user_of(self, call: wire.Call) -> UserContext:
        """The caller of ``call`` (its token removed from ``call.headers``), or ``Unauthenticated``."""
        authorization = call.headers.pop(wire.PROP_AUTHORIZATION, None)
        if self.mode == "off" or authorization is None or not authorization.strip():
            return ANONYMOUS
        if self.verifier is None:
            raise Unauthenticated(
                "this runtime has no identity provider configured (DORMANT_OIDC_ISSUER), so it cannot "
                "verify the call's token"
            )
        return await self.verifier.verify(authorization)
