"""``dormant gateway``: run the HTTP gateway (invoke and control-plane API, async and trigger workers)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    try:
        from dormant_gateway.main import add_arguments  # lazy: start-up time (main.py itself is stdlib only)
    except ImportError:  # an SDK-only install has no gateway
        return
    p = sub.add_parser("gateway", help="run the HTTP gateway (API, invoke endpoints, triggers)")
    add_arguments(p)
    p.set_defaults(run=run_gateway)


def run_gateway(args: argparse.Namespace) -> int:
    from dormant_gateway.main import run  # lazy: start-up time

    return run(args)
