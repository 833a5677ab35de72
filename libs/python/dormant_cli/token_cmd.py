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

from .common import Subparsers, add_command, fail

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
    # The dev mesh: the one of --state-dir, else the running one of this project.
    if args.state_dir is not None:
        mesh = read_mesh_record(args.state_dir / "mesh.json")
    else:
        mesh = dev_mesh()
    if mesh.get("oidcIssuer") and mesh.get("stateDir"):
        return _from_provider(args, mesh["oidcIssuer"], Path(mesh["stateDir"]), ttl)
    return _from_dev_key(args, ttl)


def _from_provider(args: argparse.Namespace, issuer: str, state_dir: Path, ttl: int) -> int:
    from dormant_local.oidc import token_for  # lazy: start-up time

    try:
        secret = json.loads((state_dir / "oidc" / "secrets.json").read_text())["management"]
    except (OSError, ValueError, KeyError):
        return fail(
            f"cannot read the dev identity provider's secret under {state_dir}; is `dormant dev` running?"
        )
    try:
        token = asyncio.run(
            token_for(issuer, secret, args.user, tuple(args.role), minutes=math.ceil(ttl / 60))
        )
    except (httpx.HTTPError, KeyError, ValueError) as exc:  # the provider is down or refused
        return fail(f"the dev identity provider at {issuer} did not issue a token ({type(exc).__name__})")
    print(token)
    return 0


def _from_dev_key(args: argparse.Namespace, ttl: int) -> int:
    from dormant_gateway.auth import Role, load_or_create_dev_key, mint_token  # lazy: start-up time
    from dormant_gateway.config import DEFAULT_AUDIENCE, DEV_ISSUER, default_state_dir  # lazy: start-up time

    known = {role.value for role in Role}
    unknown = [r for r in args.role if r not in known]
    if not args.role or unknown:
        return fail(f"the gateway's dev key signs only the roles {', '.join(sorted(known))}: give --role")
    key = load_or_create_dev_key(args.state_dir or default_state_dir())
    token = mint_token(
        key,
        sub=args.user,
        roles=[Role(r) for r in args.role],
        ttl_s=ttl,
        issuer=DEV_ISSUER,
        audience=DEFAULT_AUDIENCE,
    )
    print(token)
    return 0
