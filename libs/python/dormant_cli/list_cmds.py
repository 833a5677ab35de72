"""``dormant ls``, ``dormant versions SVC`` and ``dormant pods``: what the catalog holds, read-only.

Each reads one overview from ``dormant_catalog.listing`` and shows it as a table, or with ``--json`` as
one JSON object with stable keys (``services``, ``versions``, ``pods``); times in JSON are ISO 8601.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from .common import Subparsers, add_command, add_json_flag, add_settings_flags, show, with_catalog
from .output import Column, Styled, ago, iso, print_table, short_digest, state, weights_text

if TYPE_CHECKING:
    from dormant_catalog.listing import PoolEntry, ServiceSummary, VersionSummary


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "ls",
        help="list services: latest version, what is deployed, replicas serving, aliases and weights",
        example="dormant ls\ndormant ls --json\ndormant ls -q      # names only, one a line",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="print only the services' names")
    add_json_flag(p)
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_ls)

    p = add_command(
        sub,
        "versions",
        help="list a service's versions: created, status, image digest, aliases, replicas",
        example="dormant versions user-service\ndormant versions user-service --json",
    )
    p.add_argument("service", help="the service's name, e.g. user-service")
    add_json_flag(p)
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_versions)

    p = add_command(
        sub,
        "pods",
        help="list the pod pool: each pod free or serving which service and version, since when",
        example="dormant pods\ndormant pods --all --json",
    )
    p.add_argument("--all", action="store_true", help="also pods that stopped or have not been seen lately")
    add_json_flag(p)
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_pods)


# ---------------------------------------------------------------------------------------------- ls


def services_json(rows: list[ServiceSummary]) -> dict[str, Any]:
    return {
        "services": [
            {
                "service": r.name,
                "latest": r.latest,
                "latestStatus": r.latest_status,
                "versions": r.versions,
                "deployed": r.deployed,
                "replicas": r.replicas,
                "slots": r.slots,
                "serving": r.serving,
                "aliases": {a: {str(v): w for v, w in ws.items()} for a, ws in r.aliases.items()},
            }
            for r in rows
        ]
    }


def _replicas(serving: int, slots: int) -> Styled:
    """``serving/slots``, green when all serve; ``-`` when there are none."""
    if slots == 0:
        return Styled("-", "dim")
    return Styled(f"{serving}/{slots}", "green" if serving >= slots else "yellow")


def services_table(rows: list[ServiceSummary]) -> None:
    print_table(
        [
            Column("service", style="bold"),
            Column("latest"),
            Column("deployed"),
            Column("serving"),
            Column("aliases"),
        ],
        [
            [
                r.name,
                f"v{r.latest} ({r.latest_status})",
                "-" if r.deployed is None else f"v{r.deployed}",
                _replicas(r.serving, r.slots),
                "; ".join(f"{a} {weights_text(ws)}" for a, ws in r.aliases.items() if ws) or "-",
            ]
            for r in rows
        ],
        empty="no services yet: publish one with `dormant publish DIR`",
    )


def run_ls(args: argparse.Namespace) -> int:
    from dormant_catalog import listing  # lazy: start-up time

    rows = with_catalog(args, lambda c: c.db.run(listing.services), read_only=True)
    if args.quiet and not args.json:
        for r in rows:
            print(r.name)
        return 0
    return show(args, services_json(rows), lambda: services_table(rows))


# ---------------------------------------------------------------------------------------------- versions


def versions_json(service: str, rows: list[VersionSummary]) -> dict[str, Any]:
    return {
        "service": service,
        "versions": [
            {
                "version": r.version,
                "status": r.status,
                "createdAt": iso(r.created_at),
                "createdBy": r.created_by,
                "image": r.image,
                "digest": r.image.rsplit("@", 1)[-1],
                "interfaceHash": r.interface_hash,
                "aliases": r.weights,
                "deployed": r.deployed,
                "slots": r.slots,
                "serving": r.serving,
            }
            for r in rows
        ],
    }


def versions_table(rows: list[VersionSummary]) -> None:
    print_table(
        [
            Column("version", justify="right"),
            Column("status"),
            Column("created"),
            Column("by"),
            Column("digest", style="dim"),
            Column("aliases"),
            Column("serving"),
        ],
        [
            [
                f"v{r.version}",
                state(r.status),
                ago(r.created_at),
                r.created_by,
                short_digest(r.image),
                " ".join(f"{a}={w}%" for a, w in r.weights.items()) or "-",
                _replicas(r.serving, r.slots),
            ]
            for r in rows
        ],
    )


def run_versions(args: argparse.Namespace) -> int:
    from dormant_catalog import listing  # lazy: start-up time

    rows = with_catalog(args, lambda c: c.db.run(listing.service_versions, args.service), read_only=True)
    return show(args, versions_json(args.service, rows), lambda: versions_table(rows))


# ---------------------------------------------------------------------------------------------- pods


def pods_json(rows: list[PoolEntry]) -> dict[str, Any]:
    return {
        "pods": [
            {
                "pod": r.pod_id,
                "state": r.state,
                "service": r.service,
                "version": r.version,
                "slot": r.slot_index,
                "since": iso(r.since),
                "registeredAt": iso(r.registered_at),
                "lastSeen": iso(r.last_seen),
                "baseImages": r.base_images,
                "health": r.health,
            }
            for r in rows
        ]
    }


def health_cell(health: dict[str, Any] | None) -> Styled:
    """A pod's reported health: ``ready``, or ``not ready`` and why (``-`` before it reported any)."""
    if health is None:
        return Styled("-", "dim")
    if health.get("ready"):
        return Styled("ready", "green")
    failing = health.get("failing") or {}
    why = "; ".join(f"{name}: {detail}" for name, detail in failing.items())
    return Styled(f"not ready ({why})" if why else "not ready", "yellow")


def restarts_of(health: dict[str, Any] | None, service: str | None = None) -> dict[str, int]:
    """Runtime restarts a pod reported, ``{"svc vN": count}`` (only ``service``'s when given)."""
    out: dict[str, int] = {}
    for svc, versions in ((health or {}).get("restarts") or {}).items():
        if service is None or svc == service:
            for version, count in versions.items():
                out[f"{svc} v{version}"] = out.get(f"{svc} v{version}", 0) + int(count)
    return out


def pods_table(rows: list[PoolEntry], hidden: int) -> None:
    print_table(
        [
            Column("pod", style="bold"),
            Column("state"),
            Column("service"),
            Column("version"),
            Column("since"),
            Column("last seen"),
            Column("health"),
            Column("restarts"),
        ],
        [
            [
                r.pod_id,
                state(r.state),
                r.service or "-",
                "-" if r.version is None else f"v{r.version}",
                ago(r.since),
                ago(r.last_seen),
                health_cell(r.health if r.alive else None),
                ", ".join(f"{k}: {n}" for k, n in restarts_of(r.health).items()) or "-",
            ]
            for r in rows
        ],
        empty="no pods are running: start one with `dormant pod` (`dormant dev` starts two)",
    )
    if hidden:
        print(f"({hidden} pod(s) stopped or silent; --all shows them)", file=sys.stderr)


def run_pods(args: argparse.Namespace) -> int:
    from dormant_catalog import listing  # lazy: start-up time

    every = with_catalog(args, lambda c: c.db.run(listing.pool), read_only=True)
    rows = every if args.all else [r for r in every if r.alive]
    return show(args, pods_json(rows), lambda: pods_table(rows, len(every) - len(rows)))
