"""``dormant call SERVICE.FUNCTION JSON``: call a function and print its JSON result or typed error."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ..errors import DormantError
from .common import add_settings_flags, fail, print_error, print_json, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("call", help="call SERVICE.FUNCTION with a JSON input")
    p.add_argument("target", help="service.function, e.g. user-service.createUser")
    p.add_argument("input", nargs="?", default="{}", help="the input as JSON (default {})")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--version", type=int, default=None, help="call this version instead of live")
    p.add_argument("--call-id", default=None, help="reuse a callId (idempotent retry)")
    add_settings_flags(p, broker=True)
    p.set_defaults(run=run_call)


async def _call(broker_url: str, service: str, function: str, params: Any, args: argparse.Namespace) -> Any:
    from ..client import Client

    async with Client(broker_url) as client:
        return await client.call(
            service, function, params, timeout=args.timeout, version=args.version, call_id=args.call_id
        )


def run_call(args: argparse.Namespace) -> int:
    service, dot, function = args.target.partition(".")
    if not dot or not service or not function:
        return fail("the target must be SERVICE.FUNCTION, e.g. user-service.createUser")
    try:
        params = json.loads(args.input)
    except json.JSONDecodeError as exc:
        return fail(f"the input is not valid JSON: {exc}")
    try:
        result = asyncio.run(_call(settings_from(args).broker_url, service, function, params, args))
    except DormantError as exc:
        print_error(exc)
        return 1
    print_json(result)
    return 0
