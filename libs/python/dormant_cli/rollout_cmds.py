"""Rollout commands: ``dormant controller``, ``rollback``, ``promote``, ``approve``, ``alias set``,
``status`` and ``history``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

import orjson

from dormant import wire

from .common import add_settings_flags, fail, print_json, settings_from


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("controller", help="run the rollout controller (one is active at a time)")
    add_settings_flags(p, broker=True, catalog=True)
    p.set_defaults(run=run_controller)

    for name, text in (("rollback", "send traffic back to the previous version now"),
                       ("promote", "move the rollout in progress to 100%% now")):  # fmt: skip
        p = sub.add_parser(name, help=text)
        p.add_argument("service")
        add_settings_flags(p, catalog=True)
        p.set_defaults(run=run_rollback if name == "rollback" else run_promote)

    p = sub.add_parser("approve", help="mark a version approved (needed to deploy it to live)")
    p.add_argument("service")
    p.add_argument("version", type=int)
    p.add_argument("--status", default="approved", choices=("built", "tested", "approved", "deprecated"))
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_approve)

    p = sub.add_parser("alias", help="weighted aliases")
    alias_sub = p.add_subparsers(dest="alias_command", required=True)
    s = alias_sub.add_parser("set", help="point an alias at versions: dormant alias set SVC NAME 1=90 2=10")
    s.add_argument("service")
    s.add_argument("name")
    s.add_argument("weights", nargs="+", metavar="VERSION=WEIGHT")
    s.add_argument("--force", action="store_true", help="allow versions that are not approved (audited)")
    add_settings_flags(s, catalog=True)
    s.set_defaults(run=run_alias_set)

    p = sub.add_parser("status", help="weights, rollout, slots and live per-version stats of a service")
    p.add_argument("service")
    p.add_argument("--json", action="store_true")
    p.add_argument("--listen", type=float, default=1.5, metavar="SECONDS", help="how long to read mesh/stats")
    add_settings_flags(p, broker=True, catalog=True)
    p.set_defaults(run=run_status)

    p = sub.add_parser("history", help="the audit log and rollouts of a service")
    p.add_argument("service")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_history)


def parse_weights(items: list[str]) -> dict[int, int]:
    weights: dict[int, int] = {}
    for item in items:
        version, sep, weight = item.partition("=")
        if not sep or not version.lstrip("v").isdigit() or not weight.isdigit():
            raise ValueError(f"not VERSION=WEIGHT: {item!r}")
        weights[int(version.lstrip("v"))] = int(weight)
    return weights


def _catalog_call(args: argparse.Namespace, work: Any) -> int:
    from dormant_catalog import CatalogError, open_catalog  # lazy: start-up time

    async def go() -> Any:
        catalog = await open_catalog(settings_from(args).catalog_url)
        try:
            return await work(catalog)
        finally:
            await catalog.close()

    try:
        out = asyncio.run(go())
    except CatalogError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot reach the catalog: {exc}")
    if out is not None:
        print(out)
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    return _catalog_call(args, lambda c: c.rollback(args.service, actor="cli"))


def run_promote(args: argparse.Namespace) -> int:
    return _catalog_call(args, lambda c: c.promote(args.service, actor="cli"))


def run_approve(args: argparse.Namespace) -> int:
    async def work(c: Any) -> str:
        await c.set_version_status(args.service, args.version, args.status, actor="cli")
        return f"{args.service} v{args.version} is {args.status}"

    return _catalog_call(args, work)


def run_alias_set(args: argparse.Namespace) -> int:
    try:
        weights = parse_weights(args.weights)
    except ValueError as exc:
        return fail(str(exc))

    async def work(c: Any) -> str:
        await c.set_alias(args.service, args.name, weights, actor="cli", force=args.force)
        shown = ", ".join(f"v{v}={w}" for v, w in sorted(weights.items()))
        return f"{args.service} {args.name} -> {shown}"

    return _catalog_call(args, work)


async def read_stats(broker_url: str, service: str, seconds: float) -> dict[int, dict[str, Any]]:
    """Listen to ``mesh/stats/{service}/+/+`` for ``seconds``; numbers per version."""
    from dormant.transport import TransportError, new_transport  # lazy: start-up time
    from dormant_catalog.controller.stats import StatsBook  # lazy: start-up time

    book = StatsBook()
    transport = new_transport(broker_url)
    try:
        await transport.connect()
        await transport.subscribe([wire.stats_filter(service)], qos=0)

        async def read() -> None:
            async for message in transport.messages():
                book.add(message.topic, message.payload)

        try:
            await asyncio.wait_for(read(), seconds)
        except TimeoutError:
            pass
    except TransportError:
        return {}
    finally:
        await transport.close()
    return {
        version: {**stats.numbers(), "pods": sorted(pods)}
        for version, (stats, pods) in sorted(book.recent(service, seconds + 1).items())
    }


def run_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)

    async def work(c: Any) -> str | None:
        running = await c.deployment_status(args.service)  # NotFoundInCatalog for no such service
        deployment = await c.get_deployment(args.service)
        aliases = await c.list_aliases(args.service)
        rollouts = await c.list_rollouts(args.service, limit=1)
        slots = await c.list_slots(args.service)
        stats = await read_stats(settings.broker_url, args.service, args.listen) if args.listen > 0 else {}
        data = {
            "service": args.service,
            "deployment": None
            if deployment is None
            else {
                "version": deployment.target_version,
                "strategy": deployment.strategy,
                "status": deployment.status,
                "reason": deployment.status_reason,
            },
            "serving": {
                "state": running.state,
                "reason": running.reason,
                "replicas": running.replicas,
                "serving": running.serving,
            },
            "aliases": {a: {str(v): w for v, w in ws.items()} for a, ws in aliases.items()},
            "rollout": rollouts[0].to_json() if rollouts else None,
            "slots": [
                {
                    "index": s.slot_index,
                    "version": s.version,
                    "pod": s.pod_id,
                    "serving": s.serving,
                    "error": s.last_error,
                }
                for s in slots
            ],
            "stats": {str(v): n for v, n in stats.items()},
        }
        if args.json:
            print_json(data)
            return None
        lines = [f"{args.service}"]
        if deployment is not None:
            lines.append(
                f"  deployment  v{deployment.target_version} ({deployment.strategy}) {deployment.status}:"
                f" {deployment.status_reason or ''}"
            )
        lines.append(f"  replicas    {running.state}: {running.reason}")
        for alias, weights in aliases.items():
            lines.append(f"  alias {alias:<8} " + ", ".join(f"v{v}={w}%" for v, w in sorted(weights.items())))
        if rollouts:
            r = rollouts[0]
            lines.append(
                f"  rollout #{r.rollout_id} {r.strategy} v{r.from_version} -> v{r.to_version}: {r.state},"
                f" step {r.step + 1} ({r.percent} %){': ' + r.reason if r.reason else ''}"
            )
        for s in slots:
            state = "serving" if s.serving else ("claimed" if s.pod_id else "free")
            error = f"  last error: {s.last_error}" if s.last_error else ""
            lines.append(f"  slot {s.slot_index:<3} v{s.version}  {state:<8} {s.pod_id or ''}{error}")
        for version, n in stats.items():
            lines.append(
                f"  v{version} last {args.listen:g}s: {n['calls']} calls, error rate {n['errorRate']},"
                f" success {n['successRate']}, p99 {n['latencyP99Ms']} ms, pods {', '.join(n['pods'])}"
            )
        return "\n".join(lines)

    return _catalog_call(args, work)


def run_history(args: argparse.Namespace) -> int:
    async def work(c: Any) -> str | None:
        audit = await c.list_audit(args.service, limit=args.limit)
        if args.json:
            print_json([{"at": a.at.isoformat(), "actor": a.actor, "action": a.action, "detail": a.detail}
                        for a in audit])  # fmt: skip
            return None
        return "\n".join(
            f"{a.at:%Y-%m-%d %H:%M:%S} {a.actor:<12} {a.action:<18} {orjson.dumps(a.detail).decode()}"
            for a in audit
        )

    return _catalog_call(args, work)


def run_controller(args: argparse.Namespace) -> int:
    from dormant_controller import Controller  # lazy: start-up time

    settings = settings_from(args)
    if not settings.catalog_url:
        return fail("the controller needs a catalog: --catalog-url or DORMANT_CATALOG_URL")

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await Controller(settings.catalog_url, settings.broker_url).run(stop)

    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    asyncio.run(go())
    logging.getLogger("dormant.controller").info("stopped after %.0f s", time.monotonic() - started)
    return 0
