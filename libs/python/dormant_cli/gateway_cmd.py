"""``dormant gateway``: run the HTTP gateway (invoke and control-plane API, async and trigger workers)."""

from __future__ import annotations

import argparse

from .common import Subparsers, add_command


def register(sub: Subparsers) -> None:
    try:
        from dormant_gateway.main import add_arguments  # lazy: start-up time (main.py itself is stdlib only)
    except ImportError:  # an SDK-only install has no gateway
        return
    p = add_command(
        sub,
        "gateway",
        help="run the HTTP gateway (API, invoke endpoints, triggers)",
        example="dormant gateway --port 8080     # `dormant dev` starts one for you",
    )
    add_arguments(p)
    p.set_defaults(run=run_gateway)


def run_gateway(args: argparse.Namespace) -> int:
    from dormant_gateway.main import run  # lazy: start-up time

    return run(args)
