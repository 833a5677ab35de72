"""``dormant wait SVC``: block until the service's latest rollout ends (``kubectl rollout status`` for
Dormant), for scripts and CI.

It exits 0 once the rollout reaches the state asked for (``--for succeeded``, the default, or
``--for waiting``: judged and holding for ``dormant promote``), 1 with the rollout's reason when it
ends in another state (``rolled-back``: the reason names the threshold and the numbers), and 1 after
``--timeout`` (default 10 minutes) saying where it stands. A service with no rollout is an error.
"""

from __future__ import annotations

import argparse
import asyncio
import time
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

POLL_S = 0.5
TARGETS = ("succeeded", "waiting")
FINAL_STATES = ("succeeded", "rolled-back")


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "wait",
        help="wait for the service's latest rollout to succeed (exit 1 with the reason if it rolls back)",
        example="dormant wait user-service\ndormant wait user-service --for waiting --timeout 5m",
    )
    p.add_argument("service", help="the service (as published)")
    p.add_argument(
        "--for",
        dest="target",
        choices=TARGETS,
        default="succeeded",
        help="the state to wait for: succeeded (default) or waiting (judged, holding for promote)",
    )
    p.add_argument("--timeout", default="10m", help="give up after this long (30s, 10m, PT1H; default 10m)")
    add_json_flag(p)
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_wait)


def run_wait(args: argparse.Namespace) -> int:
    from dormant_catalog.rollouts.durations import parse_duration  # lazy: start-up time

    try:
        timeout_s = parse_duration(args.timeout)
    except ValueError as exc:
        raise CommandError(f"--timeout: {exc}") from None

    async def work(catalog: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            rollouts = await catalog.list_rollouts(args.service, limit=1)
            if not rollouts:
                raise CommandError(f"{args.service} has no rollout to wait for")
            latest = rollouts[0]
            if latest.state == args.target or latest.state in FINAL_STATES:
                return {**latest.to_json(), "timedOut": False}
            if time.monotonic() >= deadline:
                return {**latest.to_json(), "timedOut": True}
            await asyncio.sleep(POLL_S)

    result = with_catalog(args, work, read_only=True)
    reached = result["state"] == args.target and not result["timedOut"]

    def render() -> None:
        versions = f"v{result['fromVersion']} -> v{result['toVersion']}"
        head = f"rollout #{result['rolloutId']} of {args.service} {versions}"
        if reached:
            print(f"{head}: {result['state']}")
        elif result["timedOut"]:
            print(f"{head}: still {result['state']} (step {result['step'] + 1}) after {args.timeout}")
        else:
            print(f"{head}: {result['state']}: {result['reason'] or 'no reason recorded'}")

    show(args, result, render)
    return 0 if reached else 1
