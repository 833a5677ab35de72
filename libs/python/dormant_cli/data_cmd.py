"""``dormant data erase`` and ``dormant data audit``: the DataStore seen by its operator.

``erase --user NAME`` removes everything a user owns (documents, and the grants the user holds), in
every service or one (``--service``), in one transaction with one audit record naming who erased
(``--actor``, default ``cli:<login name>``): the GDPR erasure. ``audit`` prints the audit trail (who,
which service, collection and document, what, in which call, when), oldest first.

Both act on the catalog's database (where the DataStore's schema ``dormant_data`` lives) as its owner,
past row-level security, which is why they are operator commands and not functions a caller reaches.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
from typing import Any

from .common import Subparsers, add_command, add_json_flag, add_settings_flags, fail, show
from .output import Column, iso, print_table


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "data",
        help="the DataStore as its operator: erase a user's data (GDPR), read the audit trail",
        example="dormant data erase --user alice\ndormant data audit --service user-service --limit 20",
    )
    actions = p.add_subparsers(dest="data_action", required=True, metavar="ACTION")
    erase = add_command(
        actions,
        "erase",
        help="erase every document a user owns and every grant it holds (one audited transaction)",
        example="dormant data erase --user alice\ndormant data erase --user bob --service users --json",
    )
    erase.add_argument("--user", required=True, help="the user's subject (the token's sub)")
    erase.add_argument("--service", help="only in this service (default: every service)")
    erase.add_argument("--actor", help="who erases, for the audit trail (default cli:<login name>)")
    add_json_flag(erase)
    add_settings_flags(erase, catalog=True)
    erase.set_defaults(run=run_erase)
    audit = add_command(
        actions,
        "audit",
        help="the DataStore's audit trail, oldest first",
        example="dormant data audit --service user-service\ndormant data audit --call-id c-42 --json",
    )
    audit.add_argument("--service", help="only this service")
    audit.add_argument("--call-id", help="only this call")
    audit.add_argument("--limit", type=int, default=100, help="at most this many records (default 100)")
    add_json_flag(audit)
    add_settings_flags(audit, catalog=True)
    audit.set_defaults(run=run_audit)


def _catalog_url(args: argparse.Namespace) -> str:
    from dormant.config import Settings  # lazy: start-up time

    return Settings.from_env(catalog_url=args.catalog_url).catalog_url


def run_erase(args: argparse.Namespace) -> int:
    from dormant_runtime.datastore import erase_user  # lazy: start-up time

    actor = args.actor or f"cli:{getpass.getuser()}"

    async def erase() -> Any:
        import psycopg  # lazy: start-up time

        async with await psycopg.AsyncConnection.connect(_catalog_url(args)) as conn:
            return await erase_user(conn, args.user, actor=actor, service=args.service)

    try:
        counts = asyncio.run(erase())
    except OSError as exc:
        return fail(f"cannot reach the catalog database: {exc}")
    except Exception as exc:  # psycopg's errors: no DataStore schema yet, refused
        return fail(f"the erasure failed ({type(exc).__name__}); nothing was erased")
    data = {
        "user": args.user,
        "service": args.service,
        "documents": counts.documents,
        "grants": counts.grants,
    }
    where = f" in {args.service}" if args.service else ""
    said = f"erased {counts.documents} documents and {counts.grants} grants of {args.user}{where}"
    return show(args, data, lambda: print(said))


def run_audit(args: argparse.Namespace) -> int:
    from dormant_runtime.datastore import read_audit  # lazy: start-up time

    if not 1 <= args.limit <= 100_000:
        return fail("--limit must be between 1 and 100000")

    async def read() -> Any:
        import psycopg  # lazy: start-up time

        async with await psycopg.AsyncConnection.connect(_catalog_url(args)) as conn:
            return await read_audit(conn, service=args.service, call_id=args.call_id, limit=args.limit)

    try:
        records = asyncio.run(read())
    except OSError as exc:
        return fail(f"cannot reach the catalog database: {exc}")
    except Exception as exc:
        return fail(f"the audit trail cannot be read: {type(exc).__name__}")
    rows = [
        {
            "at": iso(r.at),
            "actor": r.actor,
            "service": r.service,
            "action": r.action,
            "collection": r.collection,
            "document": r.document_id,
            "callId": r.call_id,
        }
        for r in records
    ]
    shown = ("at", "actor", "service", "action", "collection", "document")
    table = [[str(row[name] or "-") for name in shown] for row in rows]
    return show(
        args,
        {"records": rows},
        lambda: print_table([Column(name.upper()) for name in shown], table, empty="no audit records"),
    )
