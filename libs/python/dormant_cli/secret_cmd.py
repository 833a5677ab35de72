"""``dormant secret``: secrets in the secrets store (OpenBao), referenced from a service's environment
as ``${SECRET:name}`` / ``${SECRET:name#field}`` ([configuration.md](configuration.md#secrets)).

``set NAME`` reads the value from stdin (never from the command line, where ``ps`` and shell history
would show it) and stores it shared by every function, or with ``--service SVC`` for that function
only (which also rewrites the function's policy and records the change, names only, in the audit
log); ``--fields`` reads a JSON object of fields instead of one value. ``list`` shows names, versions
and field names, never values; ``delete`` removes every version; ``setup`` prepares a store (the KV
engine, the ``dormant-runtime`` token role, the pods' policy) and can write a pod token to a file.
The store is ``DORMANT_VAULT_ADDR``, used with the admin token ``DORMANT_VAULT_TOKEN``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
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
        "secret",
        help="secrets in OpenBao for ${SECRET:name} references: set (value on stdin), list, delete, setup",
        example='printf %s "$DB_PASSWORD" | dormant secret set db-password --service user-service\n'
        "dormant secret list --service user-service\n"
        "dormant secret delete db-password --service user-service",
    )
    actions = p.add_subparsers(dest="secret_action", required=True, metavar="ACTION")
    set_ = add_command(
        actions,
        "set",
        help="store a new version of a secret; the value is read from stdin",
        example='printf %s "$TOKEN" | dormant secret set api-token',
    )
    set_.add_argument("name", help="the secret's name (letters, digits, '_', '.', '-')")
    set_.add_argument(
        "--fields", action="store_true", help='stdin is a JSON object of fields ({"user": ...})'
    )
    list_ = add_command(
        actions, "list", help="names and versions (never values)", example="dormant secret list"
    )
    delete = add_command(
        actions, "delete", help="delete every version of a secret", example="dormant secret delete api-token"
    )
    delete.add_argument("name", help="the secret's name")
    setup = add_command(
        actions,
        "setup",
        help="prepare the store: KV engine, the dormant-runtime token role, the pods' policy",
        example="dormant secret setup --sidecar-token-file .dormant/sidecar-token",
    )
    setup.add_argument(
        "--sidecar-token-file",
        type=Path,
        help="write a new pod token (DORMANT_VAULT_SIDECAR_TOKEN) here, mode 0600",
    )
    for parser in (set_, list_, delete):
        parser.add_argument("--service", help="the function's own secrets (default: the shared ones)")
        add_json_flag(parser)
    for parser in (set_, delete):
        add_settings_flags(parser, catalog=True)
        parser.add_argument("--actor", help="who changes it, for the audit log (default cli:<login name>)")
    set_.set_defaults(run=run_set)
    list_.set_defaults(run=run_list)
    delete.set_defaults(run=run_delete)
    setup.set_defaults(run=run_setup)


def _admin() -> Any:
    from dormant_secrets import SecretsConfig, SecretsError  # lazy: start-up time
    from dormant_secrets.openbao import OpenBaoAdmin  # lazy: start-up time

    try:
        return OpenBaoAdmin.from_config(SecretsConfig.from_env())
    except (SecretsError, ValueError) as exc:
        raise CommandError(str(exc)) from None


def _store(work: Any) -> Any:
    from dormant_secrets import SecretsError  # lazy: start-up time

    try:
        return work()
    except SecretsError as exc:
        raise CommandError(str(exc)) from None


def read_value(fields: bool) -> str | dict[str, str]:
    """The secret on stdin: one value (a single trailing newline dropped) or, with ``fields``, a JSON
    object of string fields. Refuses a terminal's empty input; errors never echo the input."""
    if sys.stdin.isatty():
        print("value (end with Ctrl-D):", file=sys.stderr)
    raw = sys.stdin.read()
    if not fields:
        value = raw[:-1] if raw.endswith("\n") else raw
        if value.endswith("\r"):
            value = value[:-1]
        if not value:
            raise CommandError("no value on stdin")
        return value
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError:
        raise CommandError("--fields: stdin is not a JSON object") from None
    if not isinstance(parsed, dict) or not parsed or not all(isinstance(v, str) for v in parsed.values()):
        raise CommandError("--fields: stdin must be a non-empty JSON object of string values")
    return {str(k): v for k, v in parsed.items()}


def _for_service(args: argparse.Namespace, action: str, detail: dict[str, Any]) -> None:
    """Rewrite the function's policy from its environment and record ``action`` in the audit log."""
    from dormant_catalog import NotFoundInCatalog  # lazy: start-up time
    from dormant_catalog.audit import record_audit  # lazy: start-up time
    from dormant_catalog.gateway import functions  # lazy: start-up time

    actor = args.actor or f"cli:{getpass.getuser()}"
    admin = _admin()

    async def change(conn: Any) -> None:
        current = await functions.get_function(conn, args.service)
        if current is None:
            raise NotFoundInCatalog(f"no service {args.service!r} in the catalog")
        _store(lambda: admin.write_policy(args.service, current.environment))
        await record_audit(conn, actor=actor, app_name=args.service, action=action, detail=detail)

    with_catalog(args, lambda catalog: catalog.db.run(change))


def run_set(args: argparse.Namespace) -> int:
    value = read_value(args.fields)
    admin = _admin()
    try:
        version = _store(lambda: admin.set_secret(args.service, args.name, value))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.service:
        _for_service(args, "set-secrets", {"names": [args.name]})
    scope = args.service or "shared"
    result = {"name": args.name, "service": args.service, "version": version}
    return show(args, result, lambda: print(f"{args.name} ({scope}): version {version}"))


def run_list(args: argparse.Namespace) -> int:
    found = _store(lambda: _admin().list_secrets(args.service))
    data = {
        "service": args.service,
        "secrets": [{"name": s.name, "version": s.version, "fields": list(s.fields)} for s in found],
    }

    def render() -> None:
        rows = [[s.name, str(s.version), ", ".join(s.fields)] for s in found]
        empty = f"{args.service} has no secrets" if args.service else "no shared secrets"
        print_table([Column("NAME"), Column("VERSION"), Column("FIELDS")], rows, empty=empty)

    return show(args, data, render)


def run_delete(args: argparse.Namespace) -> int:
    admin = _admin()
    try:
        deleted = _store(lambda: admin.delete_secret(args.service, args.name))
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if not deleted:
        raise CommandError(f"no secret {args.name!r} ({args.service or 'shared'})")
    if args.service:
        _for_service(args, "delete-secret", {"names": [args.name]})
    return show(
        args,
        {"name": args.name, "service": args.service, "deleted": True},
        lambda: print(f"{args.name} deleted"),
    )


def run_setup(args: argparse.Namespace) -> int:
    admin = _admin()
    _store(admin.setup)
    if args.sidecar_token_file is not None:
        token = _store(admin.create_sidecar_token)
        path: Path = args.sidecar_token_file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token)
        print(f"pod token written to {path} (set DORMANT_VAULT_SIDECAR_TOKEN from it)")
    print("secrets store ready")
    return 0
