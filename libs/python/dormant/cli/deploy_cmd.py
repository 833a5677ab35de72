"""``dormant deploy``: point a service's replica slots (and its ``live`` alias) at a version."""

from __future__ import annotations

import argparse
import asyncio

from .common import add_settings_flags, fail, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("deploy", help="deploy a version (all at once) onto R replica slots")
    p.add_argument("service")
    p.add_argument("--version", type=int, default=None, help="version number (default: the latest)")
    p.add_argument("--replicas", type=int, default=1)
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_deploy)


async def deploy(catalog_url: str, service: str, version: int | None, replicas: int) -> str:
    from dormant_catalog import open_catalog

    catalog = await open_catalog(catalog_url)
    try:
        record = await catalog.deploy(service, version=version, replicas=replicas, actor="cli")
        status = await catalog.deployment_status(service)
    finally:
        await catalog.close()
    return f"deployed {service} v{record.target_version} on {replicas} slot(s): {status}"


def run_deploy(args: argparse.Namespace) -> int:
    from dormant_catalog import CatalogError

    if args.replicas < 0:
        return fail("--replicas must be 0 or more")
    try:
        print(asyncio.run(deploy(settings_from(args).catalog_url, args.service, args.version, args.replicas)))
    except CatalogError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot reach the catalog: {exc}")
    return 0
