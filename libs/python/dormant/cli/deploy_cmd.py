"""``dormant deploy``: point a service's replica slots (and its ``live`` alias) at a version."""

from __future__ import annotations

import argparse
import asyncio

from .common import add_settings_flags, fail, settings_from

POLL_S = 0.05


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deploy", help="deploy a version (all at once) onto R replica slots")
    p.add_argument("service")
    p.add_argument("--version", type=int, default=None, help="version number (default: the latest)")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait until every replica serves the version (default 30; 0 returns at once)",
    )
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_deploy)


async def deploy(
    catalog_url: str, service: str, version: int | None, replicas: int, wait: float = 0.0
) -> str:
    """Deploy, then wait up to ``wait`` seconds for the pods; a one-line summary of where it stands."""
    from dormant_catalog import open_catalog

    catalog = await open_catalog(catalog_url)
    try:
        record = await catalog.deploy(service, version=version, replicas=replicas, actor="cli")
        loop = asyncio.get_running_loop()
        end = loop.time() + wait
        status = await catalog.deployment_status(service)
        while status.state != "running" and loop.time() < end:
            await asyncio.sleep(POLL_S)
            status = await catalog.deployment_status(service)
    finally:
        await catalog.close()
    head = f"deployed {service} v{record.target_version} on {replicas} slot(s)"
    return (
        f"{head}: {status.reason}"
        if status.state == "running"
        else f"{head}: {status.state}, {status.reason}"
    )


def run_deploy(args: argparse.Namespace) -> int:
    from dormant_catalog import CatalogError

    if args.replicas < 0:
        return fail("--replicas must be 0 or more")
    try:
        summary = asyncio.run(
            deploy(settings_from(args).catalog_url, args.service, args.version, args.replicas, args.wait)
        )
    except CatalogError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot reach the catalog: {exc}")
    print(summary)
    return 0
