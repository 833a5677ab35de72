"""``dormant config``: a service's live configuration, the values its handlers read as ``ctx.config``.

``set SVC KEY=VALUE …`` adds or changes values, ``unset SVC KEY …`` removes them, ``get SVC`` shows
them with their revision. Unlike ``dormant env``, a change restarts nothing: the controller publishes
the new revision on the mesh and running handlers see it from their next call; ``set`` and ``unset``
return once it is published (``--wait S``, default 5 s). A VALUE that is JSON is stored as that JSON
(``on=true``, ``limit=10``, ``'tags=["a","b"]'``); anything else is stored as a string
(``greeting=hello``); quote a JSON string to keep a word such as ``true`` a string (``'mode="true"'``).
The rules (names, 64 KB in all, no secrets) are the catalog's (``dormant_catalog.live_config``).
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import Any

from .common import (
    CommandError,
    Subparsers,
    add_command,
    add_json_flag,
    add_settings_flags,
    show,
    with_catalog,
)
from .output import Column, print_table

DEFAULT_WAIT_S = 5.0


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "config",
        help="a service's live configuration (ctx.config): set, unset, get; no restart",
        example="dormant config set user-service signups_open=true greeting=hello\n"
        "dormant config get user-service\ndormant config unset user-service greeting",
    )
    actions = p.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    set_ = add_command(
        actions,
        "set",
        help="add or change values; running handlers see them from their next call",
        example="dormant config set user-service signups_open=false",
    )
    set_.add_argument("service", help="the service (as published)")
    set_.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="values (JSON, or a string)")
    unset = add_command(
        actions, "unset", help="remove values", example="dormant config unset user-service greeting"
    )
    unset.add_argument("service", help="the service (as published)")
    unset.add_argument("names", nargs="+", metavar="KEY", help="names to remove")
    get = add_command(
        actions, "get", help="the service's values and revision", example="dormant config get user-service"
    )
    get.add_argument("service", help="the service (as published)")
    for parser in (set_, unset, get):
        add_json_flag(parser)
        add_settings_flags(parser, catalog=True)
    for parser in (set_, unset):
        parser.add_argument("--actor", help="who changes it, for the audit log (default cli:<login name>)")
        parser.add_argument(
            "--wait",
            type=float,
            default=DEFAULT_WAIT_S,
            metavar="S",
            help=f"seconds to wait for the mesh to have the change (default {DEFAULT_WAIT_S:g}; 0: do not)",
        )
    set_.set_defaults(run=run_set)
    unset.set_defaults(run=run_unset)
    get.set_defaults(run=run_get)


def parse_values(assignments: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` words as values: JSON where the VALUE parses as JSON, else the string."""
    values: dict[str, Any] = {}
    for word in assignments:
        name, sep, text = word.partition("=")
        if not sep or not name:
            raise CommandError(f"{word!r} is not KEY=VALUE")
        if name in values:
            raise CommandError(f"{name} is given twice")
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
    return values


def _change(args: argparse.Namespace, edit: Any) -> dict[str, Any]:
    """Apply ``edit(current values) -> new values`` in one transaction, then wait for publication."""
    from dormant_catalog import NotFoundInCatalog, live_config  # lazy: start-up time
    from dormant_catalog.gateway import functions  # lazy: start-up time

    if args.wait < 0:
        raise CommandError("--wait must be 0 or more seconds")
    actor = args.actor or f"cli:{getpass.getuser()}"

    async def change(conn: Any) -> tuple[live_config.LiveConfig, bool]:
        if await functions.get_function(conn, args.service) is None:
            raise NotFoundInCatalog(f"no service {args.service!r} in the catalog")
        current = await live_config.get_config(conn, args.service)
        new = edit(dict(current.values))
        if new == current.values and current.revision:
            return current, False
        return await live_config.set_config(conn, args.service, new, actor=actor), True

    async def work(catalog: Any) -> dict[str, Any]:
        stored, changed = await catalog.db.run(change)
        delivered = stored.published
        if not delivered and args.wait > 0:
            delivered = await live_config.wait_published(
                catalog.db, args.service, stored.revision, timeout_s=args.wait
            )
        return {
            "service": args.service,
            "revision": stored.revision,
            "values": stored.values,
            "changed": changed,
            "delivered": delivered,
        }

    result: dict[str, Any] = with_catalog(args, work)
    return result


def _report(args: argparse.Namespace, result: dict[str, Any]) -> int:
    def render() -> None:
        service, revision = result["service"], result["revision"]
        if not result["changed"]:
            print(f"{service}: configuration unchanged (revision {revision})")
        elif result["delivered"]:
            print(f"{service}: configuration revision {revision} is live; the next call sees it")
        else:
            print(
                f"{service}: configuration revision {revision} is stored; the controller has not"
                " published it yet (is the mesh running?)"
            )

    return show(args, result, render)


def run_set(args: argparse.Namespace) -> int:
    values = parse_values(args.assignments)
    return _report(args, _change(args, lambda current: {**current, **values}))


def run_unset(args: argparse.Namespace) -> int:
    names = set(args.names)
    return _report(args, _change(args, lambda current: {k: v for k, v in current.items() if k not in names}))


def run_get(args: argparse.Namespace) -> int:
    from dormant_catalog import NotFoundInCatalog, live_config  # lazy: start-up time
    from dormant_catalog.gateway import functions  # lazy: start-up time

    async def read(conn: Any) -> live_config.LiveConfig:
        if await functions.get_function(conn, args.service) is None:
            raise NotFoundInCatalog(f"no service {args.service!r} in the catalog")
        return await live_config.get_config(conn, args.service)

    config = with_catalog(args, lambda catalog: catalog.db.run(read), read_only=True)
    result = {
        "service": args.service,
        "revision": config.revision,
        "values": config.values,
        "published": config.published,
    }

    def render() -> None:
        rows = [[name, json.dumps(value)] for name, value in sorted(config.values.items())]
        print_table([Column("NAME"), Column("VALUE")], rows, empty=f"{args.service} has no configuration")
        print(f"revision {config.revision}{'' if config.published else ' (not yet published)'}")

    return show(args, result, render)
