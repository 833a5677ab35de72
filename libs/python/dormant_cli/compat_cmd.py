"""``dormant diff``: a service's new interface against the live version (or a version named), with the
schema path and rule of each break; exit status 0 compatible, 1 breaking, 2 when it cannot compare.

``dormant diff SVC DIR`` generates DIR and compares its ``generated/interface.json``; ``dormant diff
SVC`` compares the latest published version (and shows its recorded verdict and approval). Approving a
breaking version is ``dormant approve SVC N`` (``rollout_cmds``: approving a version approves its
breaking change, audited as ``approve-breaking``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .common import (
    CommandError,
    Subparsers,
    add_command,
    add_json_flag,
    add_settings_flags,
    print_json,
    with_catalog,
)

if TYPE_CHECKING:
    from dormant_catalog import Catalog

EXIT_BREAKING = 1
EXIT_TROUBLE = 2


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "diff",
        help="compare a service's interface with the live version: compatible (exit 0) or breaking (exit 1)",
        example=(
            "dormant diff user-service examples/user-service     # the directory against live\n"
            "dormant diff user-service                           # the latest version against live\n"
            "dormant diff user-service examples/user-service --against 2 --json"
        ),
    )
    p.add_argument("service", help="the service's name, e.g. user-service")
    p.add_argument(
        "dir",
        nargs="?",
        type=Path,
        help="a service directory to generate and compare (default: the latest version)",
    )
    p.add_argument(
        "--against",
        type=int,
        metavar="VERSION",
        help="compare with this version (default: the live one, else the latest)",
    )
    add_json_flag(p)
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_diff)


def _interface_of(service_dir: Path) -> dict[str, Any]:
    """Generate ``service_dir`` (as ``dormant generate`` does) and read its interface document."""
    from dormant_codegen import CodegenError, generate  # lazy: start-up time

    try:
        result = generate(service_dir)
    except CodegenError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        raise CommandError(f"{service_dir} does not generate", EXIT_TROUBLE) from None
    document: dict[str, Any] = json.loads((result.out_dir / "interface.json").read_text(encoding="utf-8"))
    return document


def run_diff(args: argparse.Namespace) -> int:
    from dormant_catalog import compatibility  # lazy: start-up time
    from dormant_codegen.compat import (  # lazy: start-up time
        FIRST_SCHEMA_VERSION,
        next_schema_version,
        schema_version_document,
    )
    from dormant_codegen.compat_catalog import assess  # lazy: start-up time

    if args.against is not None and args.against < 1:
        raise CommandError(f"--against {args.against}: versions are numbered from 1", EXIT_TROUBLE)
    interface = _interface_of(args.dir) if args.dir is not None else None
    if interface is not None and interface.get("service") != args.service:
        raise CommandError(
            f"{args.dir} holds service {interface.get('service')!r}, not {args.service!r}", EXIT_TROUBLE
        )

    async def work(catalog: Catalog) -> dict[str, Any]:
        async with catalog.db.transaction() as conn:
            new_version: int | None = None
            doc = interface
            if doc is None:
                new_version = await catalog_latest(conn, args.service)
                record = await _version_interface(conn, args.service, new_version)
                doc = record
            live = await compatibility.live_primary(conn, args.service)
            if new_version is not None and args.against is None and live == new_version:
                return {"sameAsLive": new_version}
            try:
                assessment = await assess(conn, args.service, doc, against=args.against, before=new_version)
            except LookupError as exc:
                raise CommandError(str(exc), EXIT_TROUBLE) from None
            taken = await compatibility.schema_versions(conn, args.service)
            stored = (
                await compatibility.get(conn, args.service, new_version) if new_version is not None else None
            )
        base, verdict = assessment.baseline, assessment.verdict
        if stored is not None:
            schema_version = stored.schema_version
        elif base is None or verdict is None:
            schema_version = FIRST_SCHEMA_VERSION
        else:
            schema_version = next_schema_version(
                base.schema_version or FIRST_SCHEMA_VERSION, verdict.bump, taken
            )
        return {
            "service": args.service,
            "new": {"dir": str(args.dir)} if args.dir is not None else {"version": new_version},
            "against": None
            if base is None
            else {
                "version": base.version,
                "live": base.version == live,
                "schemaVersion": base.schema_version,
            },
            "verdict": verdict.verdict if verdict is not None else "compatible",
            "breaking": verdict is not None and verdict.breaking,
            "bump": verdict.bump if verdict is not None else None,
            "schemaVersion": schema_version,
            "findings": [f.to_json() for f in verdict.findings] if verdict is not None else [],
            "schemaVersionDocument": schema_version_document(
                doc, schema_version, stored.backward_compatible if stored is not None else []
            ),
            "approval": None
            if stored is None or not stored.breaking
            else {
                "approvedBy": stored.approved_by,
                "approvedAt": stored.approved_at.isoformat() if stored.approved_at else None,
                "reason": stored.approval_reason,
            },
        }

    try:
        report = with_catalog(args, work)
    except CommandError as exc:  # exit status 1 means breaking: any other failure is 2
        raise CommandError(str(exc), EXIT_TROUBLE if exc.code == 1 else exc.code) from exc
    if "sameAsLive" in report:
        print(
            f"{args.service} v{report['sameAsLive']} is the latest version and the live one: nothing to"
            " compare (--against VERSION, or give a service directory)"
        )
        return 0
    if args.json:
        print_json(report)
    else:
        _print(report)
    return EXIT_BREAKING if report["breaking"] else 0


async def catalog_latest(conn: Any, service: str) -> int:
    from dormant_catalog.versions import latest_version  # lazy: start-up time

    version = await latest_version(conn, service)
    if version is None:
        raise CommandError(f"no version of {service!r} is published", EXIT_TROUBLE)
    return version


async def _version_interface(conn: Any, service: str, version: int) -> dict[str, Any]:
    from dormant_catalog.versions import get_version  # lazy: start-up time

    record = await get_version(conn, service, version)
    if record is None:
        raise CommandError(f"{service!r} has no version {version}", EXIT_TROUBLE)
    return dict(record.schema_definition)


def _print(report: dict[str, Any]) -> None:
    service = report["service"]
    new = report["new"]
    what = new["dir"] if "dir" in new else f"v{new['version']}"
    against = report["against"]
    if against is None:
        print(
            f"{service} {what}: nothing to compare with (a first version):"
            f" schema version {report['schemaVersion']}"
        )
        return
    base = f"v{against['version']}" + (" (live)" if against["live"] else "")
    was = against["schemaVersion"] or "unrecorded"
    print(
        f"{service} {what} against {base}: {report['verdict']}"
        f" (schema version {was} -> {report['schemaVersion']})"
    )
    for finding in report["findings"]:
        line = f"{finding['path']}: {finding['rule']}: {finding['message']}"
        print(line if finding["breaking"] else f"note: {line}")
    approval = report["approval"]
    if approval is not None:
        if approval["approvedAt"]:
            reason = f": {approval['reason']}" if approval["reason"] else ""
            print(f"approved by {approval['approvedBy']} at {approval['approvedAt']}{reason}")
        else:
            print(f"not approved: it cannot go live until `dormant approve {service} {new['version']}`")
    elif report["breaking"] and "dir" in new:
        print(f"publishing it makes a version that needs `dormant approve {service} N` to go live")
