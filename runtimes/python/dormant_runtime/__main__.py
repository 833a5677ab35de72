"""Entry point: ``python -m dormant_runtime`` (sidecar-controlled) or ``--app-dir DIR`` (standalone)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path

from dormant._control import CONNECTION, DRAINED, FAILED, READY, STANDBY, Drain, Load
from dormant.config import Settings
from dormant.errors import DormantError
from dormant.messaging import declared_resiliency
from dormant.migrations import declared_migrations
from dormant_catalog.audit_trail import AuditTrail, execution_mode_from_env
from dormant_catalog.calls import DEFAULT_LEASE_S, CallStore
from dormant_secrets import SecretsError
from dormant_telemetry.logs import configure_logging
from dormant_telemetry.tracing import configure_tracing

from .audit import CallAudit
from .authn import CallAuthenticator
from .control import EventChannel, read_commands
from .dedup import Deduplicator
from .dispatcher import Dispatcher
from .limits import apply_memory_limit
from .loader import LoadError, load_service
from .platform import RuntimePlatform, outgoing_client
from .secrets import apply_environment
from .server import Server
from .stats import CallStats, StatsPublisher
from .transactions import TransactionPool

log = logging.getLogger("dormant.runtime")

CONNECTION_POLL_S = 0.5
"""How often a serving runtime looks at its broker connection, to tell its sidecar when it changes."""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dormant_runtime", description=__doc__)
    parser.add_argument("--app-dir", type=Path, help="serve this unpacked app layer at once (standalone)")
    parser.add_argument("--version", type=int, default=1, help="version number to serve as (standalone)")
    parser.add_argument("--not-live", action="store_true", help="serve only the version topic")
    parser.add_argument("--broker-url", default=None)
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument(
        "--generation", type=int, default=None, help="the slot's generation (keys the MQTT session)"
    )
    parser.add_argument(
        "--memory-mb", type=int, default=None, help="memory the function may use (default: no limit)"
    )
    parser.add_argument(
        "--max-concurrency",
        type=int,
        default=None,
        help="calls run at once before the next is answered Throttled (default: no limit)",
    )
    parser.add_argument("--slot", type=int, default=None, help="replica slot index (keys the MQTT session)")
    parser.add_argument(
        "--no-dedup", action="store_true", help="do not de-duplicate callIds (no catalog database needed)"
    )
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    return parser.parse_args(argv)


def client_id_for(
    service: str,
    version: int,
    slot: int | None,
    pod_id: str,
    *,
    live: bool = True,
    generation: int | None = None,
) -> str:
    """The MQTT client id: stable per service, version, replica slot, generation and live flag, so a
    runtime that replaces a dead one in the same slot resumes its session and gets the requests it
    never acknowledged. The live flag and the generation are part of it because a pod moves a slot to
    another live flag or generation (new variables, limits or layers: the same version) with a second
    runtime while the first still serves: two healthy runtimes must never share (and take over) one
    session."""
    where = f"s{slot}" if slot is not None else pod_id
    suffix = ("" if generation is None else f"-g{generation}") + ("" if live else "-vonly")
    return f"dormant-{service}-v{version}-{where}{suffix}"


async def _serve(
    app_dir: Path,
    version: int,
    live: bool,
    slot: int | None,
    args: argparse.Namespace,
    events: EventChannel,
    stop: asyncio.Event,
) -> int:
    settings = Settings.from_env(broker_url=args.broker_url)
    transactions = None if args.no_dedup else TransactionPool(settings.catalog_url)
    if args.memory_mb is not None:
        apply_memory_limit(args.memory_mb)  # before the service's modules: they count too
    try:
        spec = load_service(app_dir)
        pod_id = os.environ.get("DORMANT_POD_ID") or uuid.uuid4().hex[:8]
        client_id = client_id_for(spec.name, version, slot, pod_id, live=live, generation=args.generation)
        platform = RuntimePlatform(
            catalog_url=None if transactions is None else settings.catalog_url,
            client=outgoing_client(settings.broker_url, client_id),
            resiliency=declared_resiliency(spec.handler_class),
        )
        dispatcher = Dispatcher(spec, version, transactions, platform=platform)
        dispatcher.memory_limit_mb = args.memory_mb
        authenticator = CallAuthenticator.from_env(spec.auth)
        audit_executions = execution_mode_from_env()  # a bad DORMANT_AUDIT_EXECUTIONS fails the start
        migrations = declared_migrations(spec.handler_class)
        # OTLP traces when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set (a bad OTEL_* setting fails the start).
        configure_tracing(
            spec.name,
            attributes={
                "service.version": str(version),
                "dormant.component": "runtime",
                "dormant.pod_id": pod_id,
            },
        )
    except (LoadError, ValueError, DormantError) as exc:
        events.emit(FAILED, error=str(exc))
        log.error("%s", exc)
        return 1
    except Exception as exc:
        events.emit(FAILED, error=f"{type(exc).__name__}: {exc}")
        log.exception("could not start the service")
        return 1
    await platform.prepare(spec.name, migrations)
    dedup = None
    if not args.no_dedup:
        owner = f"{client_id}/{os.getpid()}/{uuid.uuid4().hex[:6]}"
        lease = float(os.environ.get("DORMANT_CALL_LEASE_S", DEFAULT_LEASE_S))
        store = CallStore(
            settings.catalog_url, app_name=spec.name, owner=owner, version=version, lease_s=lease
        )
        dedup = Deduplicator(store)
        try:
            await dedup.start()
        except Exception as exc:
            events.emit(FAILED, error=f"cannot reach the call de-duplication store: {exc}")
            log.error("cannot reach the call de-duplication store: %s", exc)
            # What started before it stops with it (the messaging client would retry for ever).
            await platform.close()
            await authenticator.close()
            if transactions is not None:
                await transactions.close()
            return 1
    # The audit log (executions, refusals, security events) lives in the catalog, as the call store does.
    trail = None if args.no_dedup else AuditTrail(settings.catalog_url, executions=audit_executions)
    audit = None
    if trail is not None:
        audit = CallAudit(trail, service=spec.name, version=version, client_id=client_id)
    server = Server(
        dispatcher,
        broker_url=settings.broker_url,
        version=version,
        live=live,
        client_id=client_id,
        dedup=dedup,
        max_in_flight=args.max_in_flight,
        stats=CallStats(),
        authenticator=authenticator,
        concurrency_limit=args.max_concurrency,
        audit=audit,
    )
    assert server.stats is not None
    started = getattr(args, "load_received", None) or time.time()
    server.stats.started = started
    server.stats.in_flight = lambda: server.in_flight
    server.stats.declared = frozenset(spec.functions)
    stats = StatsPublisher(
        server.stats,
        broker_url=settings.broker_url,
        service=spec.name,
        version=version,
        pod_id=pod_id,
        client_id=f"{client_id}-stats-{os.getpid()}",
    )
    publishing = asyncio.create_task(stats.run())
    running = asyncio.create_task(server.run())
    ready = asyncio.create_task(server.wait_ready())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
    watching: asyncio.Task[None] | None = None
    if ready.done():
        server.stats.init_seconds = round(time.time() - started, 3)
        events.emit(READY, service=spec.name, version=version)
        watching = asyncio.create_task(_report_connection(server, events))
    await stopping
    if watching is not None:
        watching.cancel()
    left = await server.drain(args.drain_timeout)
    await running
    publishing.cancel()
    if dedup is not None:
        await dedup.close()
    if trail is not None:
        await trail.close()
    if transactions is not None:
        await transactions.close()
    await authenticator.close()
    await platform.close()
    events.emit(DRAINED, cut_off=left)
    return 0


async def _report_connection(server: Server, events: EventChannel) -> None:
    """Tell the sidecar when the broker connection is lost and when it is back (``connection``)."""
    connected = True
    while True:
        await asyncio.sleep(CONNECTION_POLL_S)
        now = server.connected
        if now != connected:
            connected = now
            events.emit(CONNECTION, connected=now)


async def _main(args: argparse.Namespace) -> int:
    events = EventChannel.from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if args.app_dir is not None:
        return await _serve(args.app_dir, args.version, not args.not_live, args.slot, args, events, stop)
    commands = await read_commands()
    events.emit(STANDBY)
    while True:
        command = await commands.get()
        if command is None or isinstance(command, Drain):
            events.emit(DRAINED, cut_off=0)
            return 0
        if isinstance(command, Load):
            args.load_received = time.time()  # the cold start's clock starts here
            break
    # The function's variables, before its modules are imported (they may read them at import time);
    # ${SECRET:...} references are resolved first and kept fresh while the process serves.
    try:
        secrets = await apply_environment(command)
    except SecretsError as exc:
        events.emit(FAILED, error=str(exc))
        log.error("%s", exc)
        return 1
    # The version's extra layers (dependency layer, then attached layers in attach order) go first on
    # sys.path, before site-packages; the app's own modules still come first (the loader's finder is
    # first on sys.meta_path), and modules the runtime has imported already stay the platform's.
    sys.path[:0] = [str(path) for path in command.extra_paths]
    importlib.invalidate_caches()
    args.memory_mb, args.max_concurrency = command.memory_mb, command.max_concurrency
    args.generation = command.generation
    serve = asyncio.create_task(
        _serve(command.app_dir, command.version, command.live, command.slot, args, events, stop)
    )

    async def watch_commands() -> None:
        while True:
            cmd = await commands.get()
            if cmd is None or isinstance(cmd, Drain):
                stop.set()
                return

    watcher = asyncio.create_task(watch_commands())
    try:
        return await serve
    finally:
        watcher.cancel()
        if secrets is not None:
            await secrets.close()


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # JSON lines (a pod's sidecar reads them: it sets DORMANT_LOG_FORMAT=json), text on a terminal.
    configure_logging("runtime")
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
