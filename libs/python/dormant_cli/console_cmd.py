"""``dormant console``: the URL of the gateway's web console, signed in.

The URL carries a fresh read token in its fragment (``/console/#token=...``): browsers never send a
fragment to a server, and the page moves the token into the tab's ``sessionStorage`` and out of the
address bar at once. The token comes from where ``dormant token`` gets one (the dev mesh's identity
provider, else the gateway's dev key), for the user ``console`` with the role ``viewer`` by default: the
console only reads.
"""

from __future__ import annotations

import argparse
import os
import sys
import webbrowser
from pathlib import Path
from urllib.parse import quote

from dormant.config import dev_mesh, read_mesh_record

from .common import CommandError, Subparsers, add_command, fail
from .token_cmd import issue_token, parse_ttl

READ_ROLES = ("viewer", "developer", "operator", "admin")
"""Roles that may read: any of them opens the console (it never writes)."""


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "console",
        help="print the URL of the gateway's web console with a read token (--open: open it too)",
        example="dormant console                 # http://127.0.0.1:PORT/console/#token=...\n"
        "dormant console --open          # and open it in a web browser",
    )
    p.add_argument(
        "--gateway-url",
        help="the gateway (default: env DORMANT_GATEWAY_URL, else the running dev mesh's gateway)",
    )
    p.add_argument("--user", default="console", help="the token's user (default console)")
    p.add_argument("--role", default="viewer", choices=READ_ROLES, help="the token's role (default viewer)")
    p.add_argument("--ttl", default="8h", help="how long the token lives, e.g. 30m, 8h (default 8h)")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="the dev mesh's state directory (default: this project's running dev mesh)",
    )
    p.add_argument("--open", action="store_true", help="also open the URL in a web browser")
    p.set_defaults(run=run_console)


def gateway_url(flag: str | None, state_dir: Path | None) -> str:
    """The gateway: ``--gateway-url``, else the mesh of ``--state-dir``, else ``$DORMANT_GATEWAY_URL``,
    else this project's running dev mesh; ``CommandError`` without one."""
    if flag:
        return flag
    if state_dir is not None:
        url = read_mesh_record(state_dir / "mesh.json").get("gatewayUrl")
        if not url:
            raise CommandError(f"no dev mesh runs with the state directory {state_dir}")
        return url
    url = os.environ.get("DORMANT_GATEWAY_URL") or dev_mesh().get("gatewayUrl")
    if not url:
        raise CommandError("no gateway: start `dormant dev`, or give --gateway-url (or DORMANT_GATEWAY_URL)")
    return url


def console_url(gateway: str, token: str) -> str:
    return f"{gateway.rstrip('/')}/console/#token={quote(token, safe='')}"


def run_console(args: argparse.Namespace) -> int:
    try:
        ttl = parse_ttl(args.ttl)
    except ValueError as exc:
        return fail(str(exc))
    gateway = gateway_url(args.gateway_url, args.state_dir)
    url = console_url(gateway, issue_token(args.user, (args.role,), ttl, state_dir=args.state_dir))
    print(url, flush=True)
    if args.open and not webbrowser.open(url):
        print("no web browser found here: open the URL above in one", file=sys.stderr)
    return 0
