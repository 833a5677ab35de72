"""Rollout commands: ``dormant controller``, ``rollback``, ``promote``, ``approve``, ``alias set``,
``status`` and ``history``.

``status`` shows one service (its deployment, aliases, rollout, slots and the live per-version numbers
from ``mesh/stats``) and ``history`` its rollouts and audit log, as tables or, with ``--json``, JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from dormant import wire
from dormant.config import dev_mesh, read_mesh_record

from .common import (
    CommandError,
    Subparsers,
    add_command,
    add_json_flag,
    add_settings_flags,
    fail,
    settings_from,
    show,
    with_catalog,
)
from .list_cmds import health_cell
from .output import Cell, Column, Styled, ago, iso, print_lines, print_table, progress, state, weights_text

SERVICE_HELP = "the service's name, e.g. user-service"
_DIGEST = re.compile(r"sha256:([0-9a-f]{12})[0-9a-f]{52}")
_SHORT = r"sha256:\1"


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "controller",
        help="run the rollout controller (one is active at a time)",
        example="dormant controller     # `dormant dev` starts one for you\n"
        "dormant controller --metrics-port 9464   # with /metrics, /healthz and /readyz",
    )
    p.add_argument(
        "--metrics-port",
        default=None,
        help="serve /metrics, /healthz and /readyz on this port (0: any free one; default"
        " $DORMANT_METRICS_PORT, unset: not served)",
    )
    p.add_argument(
        "--metrics-host", default=None, help="its address (default $DORMANT_METRICS_HOST or 127.0.0.1)"
    )
    add_settings_flags(p, broker=True, catalog=True)
    p.set_defaults(run=run_controller)

    p = add_command(
        sub,
        "rollback",
        help="send traffic back to the previous version now",
        example="dormant rollback user-service",
    )
    p.add_argument("service", help=SERVICE_HELP)
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_rollback)

    p = add_command(
        sub,
        "promote",
        help="move the rollout in progress to 100%% now",
        example="dormant promote user-service",
    )
    p.add_argument("service", help=SERVICE_HELP)
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_promote)

    p = add_command(
        sub,
        "approve",
        help="mark a version approved (needed to deploy it to live by a rollout or an alias; for a version"
        " whose interface breaks callers, needed to give it any weight in live: see `dormant diff`)",
        example="dormant approve user-service 2\ndormant approve user-service 1 --status deprecated\n"
        "dormant approve user-service 3 --reason 'clients updated for the new required field'",
    )
    p.add_argument("service", help=SERVICE_HELP)
    p.add_argument("version", type=int, help="the version number (see `dormant versions SERVICE`)")
    p.add_argument("--status", default="approved", choices=("built", "tested", "approved", "deprecated"))
    p.add_argument("--reason", help="why (kept in the audit log with the approval)")
    add_settings_flags(p, catalog=True)
    p.set_defaults(run=run_approve)

    p = add_command(
        sub,
        "alias",
        help="weighted aliases: point a name at versions",
        example="dormant alias set user-service live 1=90 2=10",
    )
    alias_sub = p.add_subparsers(dest="alias_command", required=True, metavar="ACTION")
    s = add_command(
        alias_sub,
        "set",
        help="point an alias at versions, each with a weight (the weights add up to 100)",
        example="dormant alias set user-service live 1=90 2=10\ndormant alias set user-service beta 2=100",
    )
    s.add_argument("service", help=SERVICE_HELP)
    s.add_argument("name", help="the alias: live (what unversioned calls reach) or a name of your own")
    s.add_argument("weights", nargs="+", metavar="VERSION=WEIGHT", help="e.g. 1=90 2=10")
    s.add_argument("--force", action="store_true", help="allow versions that are not approved (audited)")
    add_settings_flags(s, catalog=True)
    s.set_defaults(run=run_alias_set)

    p = add_command(
        sub,
        "status",
        help="a service's deployment, aliases, rollout, slots and live per-version stats",
        example="dormant status user-service\ndormant status user-service --listen 0 --json",
    )
    p.add_argument("service", help=SERVICE_HELP)
    add_json_flag(p)
    p.add_argument("--listen", type=float, default=1.5, metavar="SECONDS", help="how long to read mesh/stats")
    add_settings_flags(p, broker=True, catalog=True)
    p.set_defaults(run=run_status)

    p = add_command(
        sub,
        "history",
        help="a service's rollouts and audit log: deployments, executions, authorization, security",
        example="dormant history user-service\ndormant history user-service --limit 5 --json\n"
        "dormant history user-service --kind authorization,security --since 1h\n"
        "dormant history user-service --kind execution --actor alice",
    )
    p.add_argument("service", help=SERVICE_HELP)
    p.add_argument("--limit", type=int, default=50, help="the newest N audit entries (default 50)")
    p.add_argument(
        "--kind",
        help="only these kinds, comma-separated: deployment, execution, authorization, security, or all"
        " (default: all but execution, one entry per call)",
    )
    p.add_argument("--actor", help="only entries of this actor (a token's subject, anonymous, cli:NAME)")
    p.add_argument("--action", help="only this action (e.g. call, refused, set-config, rollback)")
    p.add_argument("--since", help="only entries from the last DURATION (30s, 10m, 2h, PT1H)")
    add_json_flag(p)
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
    """Run ``work(catalog)`` and print the line it returns."""
    out = with_catalog(args, work)
    if out is not None:
        print(out)
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    return _catalog_call(args, lambda c: c.rollback(args.service, actor="cli"))


def run_promote(args: argparse.Namespace) -> int:
    return _catalog_call(args, lambda c: c.promote(args.service, actor="cli"))


def run_approve(args: argparse.Namespace) -> int:
    async def work(c: Any) -> str:
        await c.set_version_status(args.service, args.version, args.status, actor="cli", why=args.reason)
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


def stats_broker_url(broker_url: str) -> str:
    """Where ``dormant status`` reads ``mesh/stats``: on the dev mesh's broker, as its admin account
    (``adminBrokerUrl`` in ``mesh.json``; callers may not read other runtimes' windows), found from
    the current directory or ``$DORMANT_STATE_DIR``; elsewhere with ``broker_url`` itself."""
    record = dev_mesh()
    if not record and os.environ.get("DORMANT_STATE_DIR"):
        record = read_mesh_record(Path(os.environ["DORMANT_STATE_DIR"]) / "mesh.json")
    admin = record.get("adminBrokerUrl")
    return admin if admin and record.get("brokerUrl") == broker_url else broker_url


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

    async def work(c: Any) -> dict[str, Any]:
        running = await c.deployment_status(args.service)  # NotFoundInCatalog for no such service
        deployment = await c.get_deployment(args.service)
        aliases = await c.list_aliases(args.service)
        rollouts = await c.list_rollouts(args.service, limit=1)
        slots = await c.list_slots(args.service)
        health = {p.pod_id: p.health for p in await c.pool() if p.alive}  # as the pods last reported
        stats: dict[int, dict[str, Any]] = {}
        if args.listen > 0:
            with progress(f"reading {args.service}'s live stats for {args.listen:g} s"):
                stats = await read_stats(stats_broker_url(settings.broker_url), args.service, args.listen)
        return {
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
                    "podHealth": health.get(s.pod_id) if s.pod_id else None,
                }
                for s in slots
            ],
            # Runtime restarts per version, summed over the pods that report them.
            "restarts": _restarts(args.service, health.values()),
            "stats": {str(v): n for v, n in stats.items()},
        }

    data = with_catalog(args, work, read_only=True)
    return show(args, data, lambda: status_view(data, args.listen))


def _restarts(service: str, healths: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for health in healths:
        for version, count in (((health or {}).get("restarts") or {}).get(service) or {}).items():
            out[version] = out.get(version, 0) + int(count)
    return dict(sorted(out.items(), key=lambda item: int(item[0])))


def status_view(data: dict[str, Any], listen: float) -> None:
    """``dormant status`` for people: a record, then the slots and the live numbers as tables."""
    lines: list[tuple[str, Cell]] = [("service", data["service"])]
    deployment = data["deployment"]
    if deployment is not None:
        reason = f": {deployment['reason']}" if deployment["reason"] else ""
        lines.append(
            (
                "deployment",
                f"v{deployment['version']} ({deployment['strategy']}) {deployment['status']}{reason}",
            )
        )
    serving = data["serving"]
    lines.append(
        ("replicas", Styled(f"{serving['state']}: {serving['reason']}", state(serving["state"]).style))
    )
    for alias, weights in data["aliases"].items():
        lines.append((f"alias {alias}", weights_text({int(v): w for v, w in weights.items()})))
    if data.get("restarts"):
        shown = ", ".join(f"v{v}: {n}" for v, n in data["restarts"].items())
        lines.append(("restarts", Styled(shown, "yellow")))
    r = data["rollout"]
    if r is not None:
        lines.append(
            (
                "rollout",
                f"#{r['rolloutId']} {r['strategy']} v{r['fromVersion']} -> v{r['toVersion']}: {r['state']},"
                f" step {r['step'] + 1} ({r['percent']} %){': ' + r['reason'] if r['reason'] else ''}",
            )
        )
    print_lines(lines)
    print()
    print_table(
        [
            Column("slot", justify="right"),
            Column("version"),
            Column("state"),
            Column("pod"),
            Column("pod health"),
            Column("last error"),
        ],
        [
            [
                str(s["index"]),
                f"v{s['version']}",
                state("serving" if s["serving"] else ("starting" if s["pod"] else "free")),
                s["pod"] or "-",
                health_cell(s.get("podHealth")) if s["pod"] else Styled("-", "dim"),
                s["error"] or "-",
            ]
            for s in data["slots"]
        ],
    )
    if data["stats"]:
        print()
        print_table(
            [
                Column("version"),
                Column("calls", justify="right"),
                Column("error rate", justify="right"),
                Column("success", justify="right"),
                Column("p99 ms", justify="right"),
                Column("pods"),
            ],
            [
                [
                    f"v{v}",
                    str(n["calls"]),
                    str(n["errorRate"]),
                    str(n["successRate"]),
                    str(n["latencyP99Ms"]),
                    ", ".join(n["pods"]),
                ]
                for v, n in data["stats"].items()
            ],
            title=f"last {listen:g} s",
        )


def _detail_text(detail: dict[str, Any]) -> str:
    """An audit entry's detail as ``key=value`` pairs, digests shortened."""
    parts = []
    for key, value in detail.items():
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        parts.append(f"{key}={_DIGEST.sub(_SHORT, text)}")
    return " ".join(parts)


def _history_filters(args: argparse.Namespace) -> dict[str, Any]:
    """``dormant history``'s filters as ``list_audit`` keywords; ``CommandError`` for a bad one."""
    from dormant_catalog.audit import KINDS  # lazy: start-up time
    from dormant_catalog.rollouts.durations import parse_duration  # lazy: start-up time

    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    filters: dict[str, Any] = {"actor": args.actor, "action": args.action}
    kinds = [k.strip() for k in (args.kind or "").split(",") if k.strip()]
    if not kinds:
        kinds = [k for k in KINDS if k != "execution"]
    elif kinds == ["all"]:
        kinds = list(KINDS)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise CommandError(f"--kind: {', '.join(unknown)}; one of {', '.join(KINDS)} or all")
    filters["kinds"] = kinds
    if args.since:
        try:
            filters["since"] = datetime.now(UTC) - timedelta(seconds=parse_duration(args.since))
        except ValueError as exc:
            raise CommandError(f"--since: {exc}") from None
    return filters


def run_history(args: argparse.Namespace) -> int:
    filters = _history_filters(args)
    # Rollouts are deployment history: shown unless the filters ask for other kinds only.
    show_rollouts = "deployment" in filters["kinds"] and not (args.actor or args.action or args.since)

    async def work(c: Any) -> tuple[Any, Any]:
        rollouts = await c.list_rollouts(args.service, limit=args.limit) if show_rollouts else []
        return rollouts, await c.list_audit(args.service, limit=args.limit, **filters)

    rollouts, audit = with_catalog(args, work, read_only=True)
    if not rollouts and not audit and not (args.kind or args.actor or args.action or args.since):
        raise CommandError(f"no service named {args.service!r}: nothing is recorded for it")
    data = {
        "service": args.service,
        "rollouts": [r.to_json() for r in rollouts],
        "audit": [
            {
                "id": a.id,
                "at": iso(a.at),
                "kind": a.kind,
                "actor": a.actor,
                "action": a.action,
                "detail": a.detail,
            }
            for a in audit
        ],
    }

    def render() -> None:
        if rollouts:
            print_table(
                [
                    Column("#", justify="right"),
                    Column("strategy"),
                    Column("versions"),
                    Column("state"),
                    Column("step"),
                    Column("started"),
                    Column("by"),
                    Column("reason"),
                ],
                [
                    [
                        str(r.rollout_id),
                        r.strategy,
                        f"v{r.from_version} -> v{r.to_version}",
                        state(r.state),
                        f"{r.step + 1} ({r.percent} %)",
                        ago(r.created_at),
                        r.created_by,
                        r.reason or "-",
                    ]
                    for r in rollouts
                ],
                title="rollouts",
            )
            print()
        print_table(
            [Column("at"), Column("kind"), Column("actor"), Column("action", style="bold"), Column("detail")],
            [
                [f"{a.at.astimezone():%Y-%m-%d %H:%M:%S}", a.kind, a.actor, a.action, _detail_text(a.detail)]
                for a in audit
            ],
            title="audit log" if rollouts else None,
            empty="no audit entries match",
        )

    return show(args, data, render)


def run_controller(args: argparse.Namespace) -> int:
    from dormant_controller import Controller  # lazy: start-up time
    from dormant_controller.observe import run_observed  # lazy: start-up time
    from dormant_telemetry.endpoint import metrics_host, metrics_port  # lazy: start-up time

    settings = settings_from(args)
    if not settings.catalog_url:
        return fail("the controller needs a catalog: --catalog-url or DORMANT_CATALOG_URL")
    try:
        port = metrics_port(args.metrics_port)
    except ValueError as exc:
        return fail(str(exc))

    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        controller = Controller(settings.catalog_url, settings.broker_url)
        await run_observed(controller, stop, port=port, host=metrics_host(args.metrics_host))

    from dormant_catalog.function_logs import retention_from_env  # lazy: start-up time
    from dormant_controller.audit_retention import audit_retention_from_env  # lazy: start-up time
    from dormant_telemetry.logs import configure_logging  # lazy: start-up time

    try:
        retention_from_env()  # the log retention the controller enforces: refused here when unusable
        audit_retention_from_env()  # and the audit log's
        configure_logging("controller")
    except ValueError as exc:
        return fail(str(exc))
    started = time.monotonic()
    asyncio.run(go())
    logging.getLogger("dormant.controller").info("stopped after %.0f s", time.monotonic() - started)
    return 0
