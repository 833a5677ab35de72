"""Authentication and authorization: the dev signing key, token minting, JWKS verification, roles, and
the gateway's own identity for the calls it makes by itself (``identity``, ``acting``)."""

from .keys import DevKey, load_or_create_dev_key
from .principal import Principal
from .roles import Action, Role, allowed, parse_roles
from .tokens import mint_token
from .verify import PrincipalVerifier

__all__ = [
    "Action",
    "DevKey",
    "Principal",
    "PrincipalVerifier",
    "Role",
    "allowed",
    "load_or_create_dev_key",
    "mint_token",
    "parse_roles",
]
