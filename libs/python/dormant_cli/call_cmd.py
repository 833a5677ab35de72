"""``dormant call SERVICE.FUNCTION JSON``: call a function and print its JSON result or typed error.

When the call reaches nobody, the client explains why from the service state the controller
publishes; given a catalog (``--catalog-url`` or ``DORMANT_CATALOG_URL``), the explanation comes from
the catalog itself instead, so it holds even with no controller running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any

from dormant.errors import DormantError
from dormant.routing import explain_unserved, parse_service_state

from .common import add_settings_flags, fail, print_error, print_json, settings_from

CATALOG_TIMEOUT_S = 3.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("call", help="call SERVICE.FUNCTION with a JSON input")
    p.add_argument("target", help="service.function, e.g. user-service.createUser")
    p.add_argument("input", nargs="?", default="{}", help="the input as JSON (default {})")
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument("--version", type=int, default=None, help="call this version instead of live")
    p.add_argument("--call-id", default=None, help="reuse a callId (idempotent retry)")
    add_settings_flags(p, broker=True, catalog=True)
    p.set_defaults(run=run_call)


async def _call(broker_url: str, service: str, function: str, params: Any, args: argparse.Namespace) -> Any:
    from dormant.client import Client  # lazy: start-up time

    async with Client(broker_url) as client:
        return await client.call(
            service, function, params, timeout=args.timeout, version=args.version, call_id=args.call_id
        )


async def explain_from_catalog(catalog_url: str, error: DormantError) -> DormantError:
    """``error`` (a call that reached nobody) explained again from the catalog; as it is if the
    catalog cannot be read."""
    from dormant_catalog import CatalogError, open_catalog  # lazy: start-up time

    details = error.details if isinstance(error.details, dict) else {}
    service, function = details.get("service"), details.get("function")
    if not isinstance(service, str) or not isinstance(function, str):
        return error
    version = details.get("version")
    try:
        catalog = await open_catalog(catalog_url, migrate=False, connect_timeout_s=CATALOG_TIMEOUT_S)
        try:
            state = await catalog.service_state(service)
        finally:
            await catalog.close()
    except (CatalogError, OSError):
        return error
    better = explain_unserved(
        service,
        function,
        version if isinstance(version, int) else None,
        None if state is None else parse_service_state(state),
        published=True,  # the catalog itself: a service it does not have does not exist
        topic=str(details.get("topic", "")),
    )
    if isinstance(better.details, dict) and "callId" in details:
        better.details["callId"] = details["callId"]
    return better


def run_call(args: argparse.Namespace) -> int:
    service, dot, function = args.target.partition(".")
    if not dot or not service or not function:
        return fail("the target must be SERVICE.FUNCTION, e.g. user-service.createUser")
    try:
        params = json.loads(args.input)
    except json.JSONDecodeError as exc:
        return fail(f"the input is not valid JSON: {exc}")
    settings = settings_from(args)
    try:
        result = asyncio.run(_call(settings.broker_url, service, function, params, args))
    except DormantError as exc:
        error = exc
        given = args.catalog_url or os.environ.get("DORMANT_CATALOG_URL")
        if given and isinstance(exc.details, dict) and exc.details.get("noSubscribers"):
            error = asyncio.run(explain_from_catalog(settings.catalog_url, exc))
        print_error(error)
        return 1
    print_json(result)
    return 0
