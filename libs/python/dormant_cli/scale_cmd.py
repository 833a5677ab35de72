"""``dormant scale``: a service's autoscaling settings (FR-FN-006), as the controller applies them.

``dormant scale SVC --min 0 --max 5 --target-concurrency 4 --scale-down-cooldown 2m`` changes the
given settings and keeps the others (``--schedule 'CRON=N'`` replaces the schedules, ``--no-schedules``
drops them); ``--off`` removes the settings (the autoscaler leaves the service's replicas alone
again); without flags it shows them. The rules (ranges, durations, cron) are the catalog's
(``dormant_catalog.scaling``); the gateway's ``PUT /api/v1/functions/{name}/scaling`` writes the same
record. The controller's autoscaler applies a change at its next evaluation (within a second).
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

_FLAGS = {
    "min": "minInstances",
    "max": "maxInstances",
    "target_concurrency": "targetConcurrency",
    "scale_up_cooldown": "scaleUpCooldown",
    "scale_down_cooldown": "scaleDownCooldown",
}


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "scale",
        help="a service's autoscaling settings: replicas from load, scale to zero, schedules",
        example="dormant scale user-service --min 0 --max 5 --target-concurrency 4 --scale-down-cooldown 5m\n"
        "dormant scale user-service --schedule '0-59 8-17 * * 1-5=3'   # 3 replicas on weekdays 08-18 UTC\n"
        "dormant scale user-service                                   # show the settings\n"
        "dormant scale user-service --off",
    )
    p.add_argument("service", help="the service (as published)")
    p.add_argument("--min", type=int, metavar="N", help="minInstances: 0..1000 (0 scales to zero when idle)")
    p.add_argument("--max", type=int, metavar="N", help="maxInstances: max(1, min)..1000")
    p.add_argument(
        "--target-concurrency", type=int, metavar="N", help="calls in flight one replica carries (1..1000)"
    )
    p.add_argument("--scale-up-cooldown", metavar="DURATION", help="between scale-ups (PT30S, 30s, 2m)")
    p.add_argument(
        "--scale-down-cooldown",
        metavar="DURATION",
        help="how long the load must stay low before scaling down (PT5M, 5m, 30s)",
    )
    p.add_argument(
        "--schedule",
        action="append",
        metavar="CRON=N",
        help="raise the floor to N while the 5-field cron expression (UTC) matches the minute; repeat"
        " for several (replaces the stored schedules)",
    )
    p.add_argument("--no-schedules", action="store_true", help="drop the stored schedules")
    p.add_argument("--off", action="store_true", help="remove the settings: no autoscaling")
    p.add_argument("--actor", help="who changes it, for the audit log (default cli:<login name>)")
    add_json_flag(p)
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_scale)


def parse_schedule(text: str) -> dict[str, Any]:
    """``'CRON=N'`` as a schedule (the cron expression may not hold ``=``)."""
    cron, sep, count = text.rpartition("=")
    if not sep or not cron.strip() or not count.strip().isdigit():
        raise CommandError(f"--schedule {text!r} is not CRON=N (such as '0-59 8-17 * * 1-5=3')")
    return {"cron": cron.strip(), "minInstances": int(count)}


def changes_from(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the flags give."""
    changes = {key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag) is not None}
    if args.schedule and args.no_schedules:
        raise CommandError("--schedule and --no-schedules contradict each other")
    if args.schedule:
        changes["schedules"] = [parse_schedule(text) for text in args.schedule]
    elif args.no_schedules:
        changes["schedules"] = []
    if args.off and changes:
        raise CommandError("--off removes the settings: give no other setting with it")
    return changes


def run_scale(args: argparse.Namespace) -> int:
    from dormant_catalog.gateway import functions  # lazy: start-up time
    from dormant_catalog.scaling import check_scaling  # lazy: start-up time

    changes = changes_from(args)
    actor = args.actor or f"cli:{getpass.getuser()}"
    change = bool(changes) or args.off

    async def work(conn: Any) -> dict[str, Any]:
        current = await functions.get_scaling(conn, args.service)  # NotFoundInCatalog: no such service
        if not change:
            return {"service": args.service, "scaling": current, "changed": False}
        settings = None if args.off else check_scaling({**(current or {}), **changes})
        if settings != current:
            await functions.update_function(conn, args.service, {"scaling": settings}, actor=actor)
        return {"service": args.service, "scaling": settings, "changed": settings != current}

    result: dict[str, Any] = with_catalog(args, lambda catalog: catalog.db.run(work), read_only=not change)

    def render() -> None:
        settings = result["scaling"]
        if settings is None:
            print(f"{args.service}: no autoscaling (its replicas change only by deploy)")
            return
        print(
            f"{args.service}: {settings['minInstances']}..{settings['maxInstances']} replicas,"
            f" {settings['targetConcurrency']} calls in flight per replica, scale up at most every"
            f" {settings['scaleUpCooldown']}, down after {settings['scaleDownCooldown']} of lower load"
        )
        for schedule in settings["schedules"]:
            print(f"  schedule {schedule['cron']!r}: at least {schedule['minInstances']} replicas")

    return show(args, result, render)
