"""``dormant token``: mint a bearer token signed by the local dev key (for the gateway's dev issuer)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

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
        help="mint a dev bearer token for the gateway",
        example=(
            "dormant token --role developer --ttl 30m\n"
            'curl -H "Authorization: Bearer $(dormant token --role viewer)"'
            ' "$DORMANT_GATEWAY_URL/api/v1/functions"'
        ),
    )
    p.add_argument(
        "--role",
        action="append",
        required=True,
        choices=["admin", "developer", "operator", "viewer"],
        help="role to grant (repeat for several)",
    )
    p.add_argument("--sub", default="dev-user", help="the token's subject (default dev-user)")
    p.add_argument("--ttl", default="1h", help="lifetime, e.g. 30m, 1h, 7d (default 1h)")
    p.add_argument(
        "--state-dir", type=Path, default=None, help="where the dev key lives (env DORMANT_STATE_DIR)"
    )
    p.set_defaults(run=run_token)


def run_token(args: argparse.Namespace) -> int:
    from dormant_gateway.auth import Role, load_or_create_dev_key, mint_token  # lazy: start-up time
    from dormant_gateway.config import DEFAULT_AUDIENCE, DEV_ISSUER, default_state_dir  # lazy: start-up time

    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        return fail(str(exc))
    key = load_or_create_dev_key(args.state_dir or default_state_dir())
    token = mint_token(
        key,
        sub=args.sub,
        roles=[Role(r) for r in args.role],
        ttl_s=ttl,
        issuer=DEV_ISSUER,
        audience=DEFAULT_AUDIENCE,
    )
    print(token)
    return 0
