"""``dormant call SERVICE.FUNCTION JSON``: call a function and print its JSON result, or its typed error
as one line on stderr (``error: NotFound: no service named 'nosuch'``) and exit 1.

When the call reaches nobody, the client explains why from the service state the controller
publishes; given a catalog (``--catalog-url``, ``DORMANT_CATALOG_URL`` or the running dev mesh), the
explanation comes from the catalog itself instead, so it holds even with no controller running. When
the broker cannot be reached, the error names its URL and how to point elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from dormant.errors import DormantError, Unavailable
from dormant.routing import explain_unserved, parse_service_state

from . import reach
from .common import Subparsers, add_command, add_settings_flags, fail, print_error, print_json, settings_from
from .output import progress

CATALOG_TIMEOUT_S = 3.0


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "call",
        help="call SERVICE.FUNCTION with a JSON input and print the JSON result",
        example=(
            'dormant call user-service.createUser \'{"email": "ann@example.com", "name": "Ann"}\'\n'
            'dormant call user-service.getUser \'{"userId": "u1"}\' --version 1'
        ),
    )
    p.add_argument("target", help="SERVICE.FUNCTION, e.g. user-service.createUser")
    p.add_argument("input", nargs="?", default="{}", help="the input as JSON (default {})")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")
    p.add_argument("--version", type=int, default=None, help="call this version instead of live")
    p.add_argument("--call-id", default=None, help="reuse a callId (idempotent retry)")
    p.add_argument(
        "--token",
        default=None,
        help="the bearer token to send (default: $DORMANT_TOKEN, else the dev mesh's developer token)",
    )
    add_settings_flags(p, broker=True, catalog=True)
    p.set_defaults(run=run_call)


async def _call(broker_url: str, service: str, function: str, params: Any, args: argparse.Namespace) -> Any:
    from dormant.client import Client  # lazy: start-up time

    authorization = None if args.token is None else f"Bearer {args.token}"
    async with Client(broker_url, authorization=authorization) as client:
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
        # A spinner on a terminal only: piped, stderr is kept for the one-line error scripts read.
        with progress(f"calling {args.target}", piped=False):
            result = asyncio.run(_call(settings.broker_url, service, function, params, args))
    except DormantError as exc:
        error = exc
        details = exc.details if isinstance(exc.details, dict) else {}
        if details.get("noSubscribers") and reach.source_of(args, "catalog") != "default":
            error = asyncio.run(explain_from_catalog(settings.catalog_url, exc))
        elif isinstance(exc, Unavailable) and "broker" in details:  # the broker refused the connection
            source = reach.source_of(args, "broker")
            error = Unavailable(
                reach.unreachable("broker", settings.broker_url, source, exc.message), details
            )
        print_error(error)
        return 1
    print_json(result)
    return 0
