"""``dormant deploy``: point a service's replica slots (and its ``live`` alias) at a version, all at once
(the default) or by a rollout strategy the controller drives (``--strategy canary|linear|blue-green|
rolling|ab``); ``dormant undeploy``: take them away again.

An all-at-once deploy waits (``--wait``) until every replica serves the version, showing how far it
is, and exits 1, saying why, when the wait ends first or as soon as a pod fails to start the version.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .common import (
    Subparsers,
    add_command,
    add_settings_flags,
    catalog_failure,
    fail,
    settings_from,
    with_catalog,
)
from .output import progress

if TYPE_CHECKING:
    from dormant_catalog import DeploymentStatus

POLL_S = 0.05
CATALOG_TIMEOUT_S = 5.0
ALL_AT_ONCE = "all-at-once"
STRATEGY_CHOICES = (ALL_AT_ONCE, "canary", "linear", "blue-green", "rolling", "ab")
ROLLOUT_FLAGS = (
    "steps",
    "interval",
    "linear_step",
    "batch_size",
    "split",
    "keep_old",
    "max_error_rate",
    "max_p99_ms",
    "min_success_rate",
    "min_samples",
    "manual_promotion",
    "force",
)


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "deploy",
        help="deploy a version onto R replica slots (all at once, or by a rollout strategy)",
        example=(
            "dormant deploy user-service                      # the latest version, 1 replica\n"
            "dormant deploy user-service --version 2 --replicas 2\n"
            "dormant deploy user-service --version 2 --strategy canary --steps 10,50,100 --interval 30s"
        ),
    )
    p.add_argument("service", help="the service's name, e.g. user-service")
    p.add_argument("--version", type=int, default=None, help="version number (default: the latest)")
    p.add_argument("--replicas", type=int, default=None, help="all-at-once only (default 1)")
    r = p.add_argument_group("rollouts (driven by 'dormant controller'; see docs/rollouts.md)")
    r.add_argument("--strategy", choices=STRATEGY_CHOICES, default=ALL_AT_ONCE)
    r.add_argument("--steps", metavar="P,P,...", help="canary/linear/rolling: percentages, e.g. 10,50,100")
    r.add_argument("--interval", metavar="DURATION", help="how long each step is observed: 30s, PT10M")
    r.add_argument("--linear-step", type=int, metavar="PERCENT", help="linear: the increment (default 10)")
    r.add_argument("--batch-size", type=int, metavar="PERCENT", help="rolling: slots per batch (default 25)")
    r.add_argument("--split", type=int, metavar="PERCENT", help="ab: the new version's share (default 50)")
    r.add_argument("--keep-old", metavar="DURATION", help="how long the old version keeps its slots")
    r.add_argument("--max-error-rate", type=float, metavar="FRACTION", help="roll back above (default 0.05)")
    r.add_argument("--max-p99-ms", type=float, metavar="MS", help="roll back above (default 1000)")
    r.add_argument(
        "--min-success-rate", type=float, metavar="FRACTION", help="roll back below (default 0.95)"
    )
    r.add_argument("--min-samples", type=int, metavar="N", help="calls needed to judge a step (default 20)")
    r.add_argument("--manual-promotion", action="store_true", help="wait for 'dormant promote' before 100%%")
    r.add_argument("--force", action="store_true", help="allow a version that is not approved (audited)")
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait until every replica serves the version (default 30; 0 returns at once); exit 1 if they"
        " do not, or if a pod fails to start it",
    )
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_deploy)

    p = add_command(
        sub,
        "undeploy",
        help="stop serving a service: its replica slots go, its pods return to the pool (versions stay)",
        example="dormant undeploy user-service\ndormant deploy user-service     # serve it again",
    )
    p.add_argument("service", help="the service's name, e.g. user-service")
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_undeploy)


async def deploy(
    catalog_url: str, service: str, version: int | None, replicas: int, wait: float = 0.0
) -> str:
    """Deploy, then wait up to ``wait`` seconds for the pods; a one-line summary of where it stands."""
    return (await deploy_and_wait(catalog_url, service, version, replicas, wait))[1]


async def deploy_and_wait(
    catalog_url: str,
    service: str,
    version: int | None,
    replicas: int,
    wait: float = 0.0,
    on_wait: Callable[[DeploymentStatus], None] | None = None,
) -> tuple[bool, str]:
    """Deploy, then wait up to ``wait`` seconds for every replica to serve; (whether they do, a
    one-line summary). The wait ends early, unsuccessfully, when a pod fails to start the version.
    ``on_wait`` sees every status read while waiting."""
    from dormant_catalog import open_catalog  # lazy: start-up time

    catalog = await open_catalog(catalog_url, connect_timeout_s=CATALOG_TIMEOUT_S)
    try:
        record = await catalog.deploy(service, version=version, replicas=replicas, actor="cli")
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        status = await catalog.deployment_status(service)
        while status.state == "pending" and loop.time() < end:
            if on_wait is not None:
                on_wait(status)
            await asyncio.sleep(POLL_S)
            status = await catalog.deployment_status(service)
    finally:
        await catalog.close()
    head = f"deployed {service} v{record.target_version} on {replicas} slot(s)"
    if status.state in ("running", "stopped"):
        return True, f"{head}: {status.reason}"
    if status.state == "failed":
        return False, f"{head}, but it failed to start: {status.reason}"
    if wait <= 0:
        return True, f"{head}: {status.state}, {status.reason}"
    return False, f"{head}, but not every replica serves it after {wait:g} s: {status.reason}"


def rollout_config(args: argparse.Namespace) -> dict[str, Any]:
    """The seed-style rollout configuration the flags ask for (unset flags keep the defaults)."""
    config: dict[str, Any] = {"strategy": args.strategy}
    if args.steps is not None:
        try:
            config["increments"] = [int(p) for p in args.steps.replace(" ", "").split(",") if p]
        except ValueError:
            raise ValueError(f"--steps must be comma-separated percentages, not {args.steps!r}") from None
    optional = {
        "stepDuration": args.interval,
        "linearPercentage": args.linear_step,
        "batchSize": args.batch_size,
        "keepOld": args.keep_old,
        "minSamples": args.min_samples,
    }
    config.update({key: value for key, value in optional.items() if value is not None})
    if args.split is not None:
        config["trafficSplit"] = {"new": args.split}  # keyed by the version once it is known
    thresholds = {
        "errorRate": args.max_error_rate,
        "latencyP99Ms": args.max_p99_ms,
        "successRate": args.min_success_rate,
    }
    if any(v is not None for v in thresholds.values()):
        config["rollbackThresholds"] = {k: v for k, v in thresholds.items() if v is not None}
    if args.manual_promotion:
        config["manualPromotion"] = True
    if args.force:
        config["force"] = True
    _refuse_unread_flags(config)
    return config


_FLAG_OF = {
    "increments": "--steps",
    "stepDuration": "--interval",
    "linearPercentage": "--linear-step",
    "batchSize": "--batch-size",
    "keepOld": "--keep-old",
    "minSamples": "--min-samples",
    "trafficSplit": "--split",
    "rollbackThresholds": "--max-error-rate/--max-p99-ms/--min-success-rate",
    "manualPromotion": "--manual-promotion",
    "force": "--force",
}


def _refuse_unread_flags(config: dict[str, Any]) -> None:
    """``ValueError`` naming a flag the chosen strategy would ignore (``--steps`` with blue-green ...):
    a setting accepted and then ignored would be worse than an error."""
    from dormant_catalog.rollouts.config import SETTINGS, strategy_name  # lazy: start-up time

    strategy = strategy_name(config["strategy"])
    for key in config:
        if key not in SETTINGS[strategy]:
            raise ValueError(f"{_FLAG_OF.get(key, key)} does not apply to a {strategy} rollout")


async def start_rollout(catalog_url: str, service: str, version: int | None, config: dict[str, Any]) -> str:
    """Start a rollout of ``version`` (default: the latest); a summary of what the controller will do."""
    from dormant_catalog import NotFoundInCatalog, open_catalog  # lazy: start-up time

    async with await open_catalog(catalog_url) as catalog:
        if version is None:
            version = await catalog.latest_version(service)
            if version is None:
                raise NotFoundInCatalog(f"{service!r} has no published version")
        if "trafficSplit" in config:
            config = {**config, "trafficSplit": {f"v{version}": config["trafficSplit"]["new"]}}
        record = await catalog.start_rollout(service, version, config, actor="cli")
    settings = record.settings
    steps = " -> ".join(f"{p} %" for p in settings.steps)
    return (
        f"started {record.strategy} rollout #{record.rollout_id} of {service}"
        f" v{record.from_version} -> v{record.to_version}: {steps}, {settings.interval_s:g} s a step"
        f"{', then waits for dormant promote' if settings.manual_promotion else ''}"
        f" (watch: dormant status {service}; undo: dormant rollback {service})"
    )


def run_deploy(args: argparse.Namespace) -> int:
    from dormant_catalog import CatalogError  # lazy: start-up time

    catalog_url = settings_from(args).catalog_url
    if args.strategy != ALL_AT_ONCE:
        if args.replicas is not None:
            return fail("--replicas is for all-at-once deploys: a rollout keeps the deployment's replicas")
        try:
            config = rollout_config(args)
            summary = asyncio.run(start_rollout(catalog_url, args.service, args.version, config))
        except ValueError as exc:
            return fail(str(exc))
        except (CatalogError, OSError) as exc:
            raise catalog_failure(args, exc) from exc
        print(summary)
        return 0
    given = [
        f"--{n.replace('_', '-')}"
        for n in ROLLOUT_FLAGS
        if getattr(args, n) is not None and getattr(args, n) is not False
    ]
    if given:
        return fail(f"{', '.join(given)} need a --strategy other than {ALL_AT_ONCE}")
    replicas = 1 if args.replicas is None else args.replicas
    if replicas < 0:
        return fail("--replicas must be 0 or more")
    try:
        with progress(f"deploying {args.service} on {replicas} slot(s)") as update:
            ok, summary = asyncio.run(
                deploy_and_wait(
                    catalog_url,
                    args.service,
                    args.version,
                    replicas,
                    args.wait,
                    on_wait=lambda status: update(f"waiting for {args.service}: {status.reason}"),
                )
            )
    except (CatalogError, OSError) as exc:
        raise catalog_failure(args, exc) from exc
    if not ok:
        return fail(summary)
    print(summary)
    return 0


def run_undeploy(args: argparse.Namespace) -> int:
    from dormant_catalog.deployments import undeploy  # lazy: start-up time

    undone = with_catalog(args, lambda c: c.db.run(undeploy, args.service, actor="cli"))
    if undone is None:
        print(f"{args.service} was not deployed")
    else:
        version, replicas = undone
        print(f"undeployed {args.service} (v{version} on {replicas} slot(s)); its pods return to the pool")
    return 0
