"""``dormant token``: a bearer token for a user with roles.

With a dev mesh running (``dormant dev``), the token comes from its identity provider (a real OIDC
provider: nanoidp), which the mesh's gateway trusts; the user is made, or remade, with exactly the roles
given. Without one, it is signed by the gateway's local dev key (a gateway started on its own, with no
issuer configured, trusts that key)."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import re
from pathlib import Path

import httpx

from dormant.config import dev_mesh, read_mesh_record

from .common import CommandError, Subparsers, add_command, fail

_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> int:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d`` as seconds."""
    match = _TTL.match(text.strip())
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"invalid --ttl {text!r}: use e.g. 30m, 1h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "token",
        help="a bearer token for a user with roles, from the dev mesh's identity provider",
        example=(
            "dormant token --user alice --role developer --ttl 30m\n"
            'curl -H "Authorization: Bearer $(dormant token --role viewer)"'
            ' "$DORMANT_GATEWAY_URL/api/v1/functions"'
        ),
    )
    p.add_argument(
        "--role",
        action="append",
        default=[],
        help="role to grant (repeat for several); the gateway knows admin, developer, operator, viewer",
    )
    p.add_argument(
        "--user",
        "--sub",
        dest="user",
        default="developer",
        help="the user (token subject; default developer)",
    )
    p.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the dev mesh's state directory (default: this project's running dev mesh; without one, the"
        " gateway dev key's directory, env DORMANT_STATE_DIR)",
    )
    p.set_defaults(run=run_token)


def run_token(args: argparse.Namespace) -> int:
    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        return fail(str(exc))
    print(issue_token(args.user, tuple(args.role), ttl, state_dir=args.state_dir))
    return 0


def issue_token(user: str, roles: tuple[str, ...], ttl_s: int, *, state_dir: Path | None = None) -> str:
    """A token for ``user`` with ``roles``: from the dev mesh's identity provider (the mesh of
    ``state_dir``, else this project's running one), else signed by the gateway's dev key;
    ``CommandError`` when neither can issue it (``dormant console`` uses it too)."""
    mesh = read_mesh_record(state_dir / "mesh.json") if state_dir is not None else dev_mesh()
    if mesh.get("oidcIssuer") and mesh.get("stateDir"):
        return _from_provider(user, roles, mesh["oidcIssuer"], Path(mesh["stateDir"]), ttl_s)
    return _from_dev_key(user, roles, ttl_s, state_dir)


def _from_provider(user: str, roles: tuple[str, ...], issuer: str, state_dir: Path, ttl: int) -> str:
    from dormant_local.oidc import token_for  # lazy: start-up time

    try:
        secret = json.loads((state_dir / "oidc" / "secrets.json").read_text())["management"]
    except (OSError, ValueError, KeyError):
        raise CommandError(
            f"cannot read the dev identity provider's secret under {state_dir}; is `dormant dev` running?"
        ) from None
    try:
        return asyncio.run(token_for(issuer, secret, user, roles, minutes=math.ceil(ttl / 60)))
    except (httpx.HTTPError, KeyError, ValueError) as exc:  # the provider is down or refused
        raise CommandError(
            f"the dev identity provider at {issuer} did not issue a token ({type(exc).__name__})"
        ) from None


def _from_dev_key(user: str, roles: tuple[str, ...], ttl: int, state_dir: Path | None) -> str:
    from dormant_gateway.auth import Role, load_or_create_dev_key, mint_token  # lazy: start-up time
    from dormant_gateway.config import DEFAULT_AUDIENCE, DEV_ISSUER, default_state_dir  # lazy: start-up time

    known = {role.value for role in Role}
    unknown = [r for r in roles if r not in known]
    if not roles or unknown:
        raise CommandError(
            f"the gateway's dev key signs only the roles {', '.join(sorted(known))}: give --role"
        )
    key = load_or_create_dev_key(state_dir or default_state_dir())
    return mint_token(
        key,
        sub=user,
        roles=[Role(r) for r in roles],
        ttl_s=ttl,
        issuer=DEV_ISSUER,
        audience=DEFAULT_AUDIENCE,
    )
