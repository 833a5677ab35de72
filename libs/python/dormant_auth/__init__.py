"""Bearer-token verification for every component that accepts calls: the runtime (each call) and the
gateway (each HTTP request), one implementation.

``TokenVerifier`` turns an ``authorization`` value into the SDK's ``UserContext`` or raises
``Unauthenticated``: JWTs are checked against the issuer's JWKS (discovered from its OpenID
configuration, cached, refreshed on an unknown ``kid`` at a bounded rate, served from cache while the
issuer is down), opaque tokens through RFC 7662 introspection (cached until they expire). A token
already verified is answered from memory until it expires. JOSE is joserfc's, not hand-written.
"""

from __future__ import annotations

from ._claims import ClaimNames, user_from_claims
from ._config import IssuerConfig
from .verifier import TokenVerifier, bearer_token

__all__ = ["ClaimNames", "IssuerConfig", "TokenVerifier", "bearer_token", "user_from_claims"]
