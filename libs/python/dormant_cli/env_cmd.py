"""``dormant env``: a service's environment variables, as its runtimes see them.

``set SVC KEY=VALUE …`` adds or changes variables, ``unset SVC KEY …`` removes them, ``list SVC`` shows
them. They live in the catalog with the service's other control-plane settings (the gateway's ``PUT
/api/v1/functions/{name}/environment`` writes the same record) and reach the runtimes with their
slots: a change is a new generation of every replica, which loads the same version in a new process
with the new variables before the old one drains, so no call fails. The rules (names, reserved
prefixes, 4 KB in all) are the catalog's (``dormant_catalog.environment``).
"""

from __future__ import annotations

import argparse
import getpass
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


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "env",
        help="a service's environment variables: set, unset, list (a change reloads every replica)",
        example="dormant env set user-service LOG_LEVEL=debug GREETING=hi\n"
        "dormant env list user-service\ndormant env unset user-service GREETING",
    )
    actions = p.add_subparsers(dest="env_action", required=True, metavar="ACTION")
    set_ = add_command(
        actions,
        "set",
        help="add or change variables; the service's replicas reload with them, no call fails",
        example="dormant env set user-service LOG_LEVEL=debug",
    )
    set_.add_argument("service", help="the service (as published)")
    set_.add_argument("assignments", nargs="+", metavar="KEY=VALUE", help="variables to set")
    unset = add_command(
        actions, "unset", help="remove variables", example="dormant env unset user-service LOG_LEVEL"
    )
    unset.add_argument("service", help="the service (as published)")
    unset.add_argument("names", nargs="+", metavar="KEY", help="variables to remove")
    list_ = add_command(
        actions, "list", help="the service's variables", example="dormant env list user-service"
    )
    list_.add_argument("service", help="the service (as published)")
    for parser in (set_, unset, list_):
        add_json_flag(parser)
        add_settings_flags(parser, catalog=True)
        parser.add_argument("--actor", help="who changes it, for the audit log (default cli:<login name>)")
    set_.set_defaults(run=run_set)
    unset.set_defaults(run=run_unset)
    list_.set_defaults(run=run_list)


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` words as a mapping (the value may hold ``=``); ``CommandError`` for a word with
    no ``=`` or a name given twice."""
    variables: dict[str, str] = {}
    for word in assignments:
        name, sep, value = word.partition("=")
        if not sep or not name:
            raise CommandError(f"{word!r} is not KEY=VALUE")
        if name in variables:
            raise CommandError(f"{name} is given twice")
        variables[name] = value
    return variables


def _change(args: argparse.Namespace, edit: Any) -> dict[str, Any]:
    """Apply ``edit(current variables) -> new variables`` to the service's record in one transaction."""
    from dormant_catalog import NotFoundInCatalog  # lazy: start-up time
    from dormant_catalog.gateway import functions  # lazy: start-up time

    actor = args.actor or f"cli:{getpass.getuser()}"

    async def change(conn: Any) -> dict[str, Any]:
        current = await functions.get_function(conn, args.service)
        if current is None:
            raise NotFoundInCatalog(f"no service {args.service!r} in the catalog")
        variables = edit(dict(current.environment))
        if variables == current.environment:
            return {"service": args.service, "variables": variables, "changed": False}
        record = await functions.update_function(conn, args.service, {"environment": variables}, actor=actor)
        return {"service": args.service, "variables": record.environment, "changed": True}

    result: dict[str, Any] = with_catalog(args, lambda catalog: catalog.db.run(change))
    if result["changed"]:
        _sync_secrets_policy(args.service, result["variables"])
    return result


def _sync_secrets_policy(service: str, variables: dict[str, str]) -> None:
    """With a secrets store configured (``DORMANT_VAULT_ADDR`` and an admin ``DORMANT_VAULT_TOKEN``),
    rewrite the function's policy so the shared secrets its variables reference become readable."""
    from dormant_secrets import SecretsError  # lazy: start-up time
    from dormant_secrets.config import SecretsConfig  # lazy: start-up time
    from dormant_secrets.openbao import OpenBaoAdmin  # lazy: start-up time

    try:
        config = SecretsConfig.from_env()
    except ValueError as exc:
        problem = f"the environment changed, but the secrets store is misconfigured: {exc}"
        raise CommandError(problem) from None
    if config.provider != "openbao" or not config.token:
        return
    try:
        admin = OpenBaoAdmin.from_config(config)
        try:
            admin.write_policy(service, variables)
        finally:
            admin.close()
    except SecretsError as exc:
        problem = f"the environment changed, but the function's secrets policy was not: {exc}"
        raise CommandError(problem) from None


def _report(args: argparse.Namespace, result: dict[str, Any]) -> int:
    def render() -> None:
        if result["changed"]:
            print(f"{result['service']}: environment changed; every replica reloads with it (no call fails)")
        else:
            print(f"{result['service']}: environment unchanged")

    return show(args, result, render)


def run_set(args: argparse.Namespace) -> int:
    assignments = parse_assignments(args.assignments)
    return _report(args, _change(args, lambda current: {**current, **assignments}))


def run_unset(args: argparse.Namespace) -> int:
    names = set(args.names)
    return _report(args, _change(args, lambda current: {k: v for k, v in current.items() if k not in names}))


def run_list(args: argparse.Namespace) -> int:
    from dormant_catalog import NotFoundInCatalog  # lazy: start-up time
    from dormant_catalog.gateway import functions  # lazy: start-up time

    async def read(conn: Any) -> dict[str, str]:
        current = await functions.get_function(conn, args.service)
        if current is None:
            raise NotFoundInCatalog(f"no service {args.service!r} in the catalog")
        return dict(current.environment)

    variables = with_catalog(args, lambda catalog: catalog.db.run(read), read_only=True)

    def render() -> None:
        rows = [[name, value] for name, value in sorted(variables.items())]
        print_table([Column("NAME"), Column("VALUE")], rows, empty=f"{args.service} has no variables")

    return show(args, {"service": args.service, "variables": variables}, render)
