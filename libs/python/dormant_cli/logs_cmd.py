"""``dormant logs SVC``: a service's function log records, and new ones as they come (``-f``).

The records are what the pods captured from the service's runtimes (``ctx.logger`` lines with their
callId, ``print()`` output, tracebacks), stored in the catalog for the retention period
(``dormant_catalog.function_logs``). Without ``-f`` the command prints the newest ``--limit`` that
match the filters (``--version``, ``--since``, ``--call``, ``--level``), oldest first. With ``-f`` it
then prints each new record: live from ``mesh/logs/{svc}/+`` on the broker (on a dev mesh as its admin
account, since callers may not read other services' logs), or, where the broker refuses that, by
polling the catalog. One line per record in plain text, or the JSON record with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from dormant import wire

from .common import CommandError, Subparsers, add_command, add_settings_flags, catalog_failure, settings_from
from .rollout_cmds import stats_broker_url

if TYPE_CHECKING:
    from dormant.transport import Transport
    from dormant_catalog import Catalog
    from dormant_catalog.function_logs import LogFilter

CATALOG_POLL_S = 0.25
"""How often ``-f`` reads new records from the catalog when it cannot read them from the broker."""
RECONNECT_S = 1.0


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "logs",
        help="a service's function logs (ctx.logger, print, tracebacks); -f follows new ones",
        example="dormant logs user-service --since 10m\n"
        "dormant logs user-service -f                      # and every new record\n"
        "dormant logs user-service --call CALLID           # one call's records\n"
        "dormant logs user-service --level warning --version 2 --json",
    )
    p.add_argument("service", help="the service (as published)")
    p.add_argument("-f", "--follow", action="store_true", help="then print new records as they come")
    p.add_argument("--version", type=int, metavar="N", help="only this version's records")
    p.add_argument(
        "--since",
        metavar="WHEN",
        help="only records since: 30s, 10m, 2h, 7d, or an ISO 8601 time with a zone",
    )
    p.add_argument("--call", metavar="CALLID", help="only the records of this call")
    p.add_argument(
        "--level",
        metavar="LEVEL",
        help="only records at this level or above (debug ... critical)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="print the newest N matching records first (0..1000, default 100)",
    )
    p.add_argument("--json", action="store_true", help="one JSON record per line instead of text")
    p.add_argument("--utc", action="store_true", help="show times in UTC instead of this machine's zone")
    add_settings_flags(p, broker=True, catalog=True)
    p.set_defaults(run=run_logs)


def log_filter(args: argparse.Namespace) -> LogFilter:
    """The command's filters; ``CommandError`` for a value that is not one."""
    from dormant_catalog import InvalidCatalogRequest  # lazy: start-up time
    from dormant_catalog.function_logs import SEVERITY, LogFilter, parse_since  # lazy: start-up time
    from dormant_telemetry.logs import parse_level  # lazy: start-up time

    if args.version is not None and args.version < 1:
        raise CommandError("--version must be at least 1")
    if not 0 <= args.limit <= 1000:
        raise CommandError("--limit must be from 0 to 1000")
    try:
        since = parse_since(args.since) if args.since else None
        severity = SEVERITY[parse_level(args.level)] if args.level else None
    except (InvalidCatalogRequest, ValueError) as exc:
        raise CommandError(str(exc).replace("since must", "--since must")) from None
    return LogFilter(
        args.service, version=args.version, since=since, call_id=args.call, min_severity=severity
    )


class Printer:
    """Prints each record once (a record may come both from the catalog and live: ``logId``)."""

    def __init__(self, *, as_json: bool, utc: bool) -> None:
        self.as_json = as_json
        self.utc = utc
        self.printed = 0
        self._seen: set[str] = set()

    def __call__(self, record: dict[str, Any]) -> None:
        from dormant_telemetry.logs import dumps, text_line  # lazy: start-up time

        log_id = record.get("logId")
        if isinstance(log_id, str):
            if log_id in self._seen:
                return
            self._seen.add(log_id)
            if len(self._seen) > 100_000:
                self._seen.clear()
        line = dumps(record) if self.as_json else text_line(record, local_time=not self.utc)
        print(line, flush=True)
        self.printed += 1


def run_logs(args: argparse.Namespace) -> int:
    import psycopg  # lazy: start-up time

    from dormant_catalog import CatalogError, open_catalog  # lazy: start-up time

    wanted = log_filter(args)
    settings = settings_from(args)
    printer = Printer(as_json=args.json, utc=args.utc)

    async def go() -> None:
        catalog = await open_catalog(settings.catalog_url, migrate=False, connect_timeout_s=5.0)
        try:
            if not await catalog.list_versions(args.service):
                raise CommandError(f"no service {args.service!r} in the catalog")
            if args.follow:
                await _follow(catalog, wanted, args, printer, stats_broker_url(settings.broker_url))
            else:
                await _print_recent(catalog, wanted, args.limit, printer)
        finally:
            await catalog.close()

    try:
        asyncio.run(go())
    except (CatalogError, OSError, psycopg.OperationalError, psycopg.errors.UndefinedTable) as exc:
        raise catalog_failure(args, exc) from exc
    if not printer.printed and not args.follow and not args.json:
        print(f"no log records of {args.service} match", file=sys.stderr)
    return 0


async def _print_recent(catalog: Catalog, wanted: LogFilter, limit: int, printer: Printer) -> list[int]:
    from dormant_catalog.function_logs import query_logs  # lazy: start-up time

    if limit == 0:
        return []
    rows = await catalog.db.run(query_logs, wanted, limit=limit)
    for row in rows:
        printer(row.record)
    return [row.seq for row in rows]


async def _follow(
    catalog: Catalog, wanted: LogFilter, args: argparse.Namespace, printer: Printer, broker_url: str
) -> None:
    from dormant.transport import TransportError  # lazy: start-up time

    transport: Transport | None = None
    try:
        transport = await _subscribe(broker_url, wanted)
    except (TransportError, OSError) as exc:
        print(f"reading new records from the catalog (the broker: {exc})", file=sys.stderr)
    if transport is None:
        await _follow_catalog(catalog, wanted, args.limit, printer)
        return
    try:
        # Subscribed first, then the stored records: one that arrives in between is printed once.
        await _print_recent(catalog, wanted, args.limit, printer)
        print(f"following {args.service}'s logs (Ctrl-C to stop)", file=sys.stderr, flush=True)
        while True:
            try:
                async for message in transport.messages():
                    _print_live(message.topic, message.payload, wanted, printer)
            except TransportError as exc:
                print(f"lost the broker ({exc}); reconnecting", file=sys.stderr, flush=True)
            await transport.close()
            transport = None
            while transport is None:
                await asyncio.sleep(RECONNECT_S)
                try:
                    transport = await _subscribe(broker_url, wanted)
                except (TransportError, OSError):
                    continue
            print(
                "following again (records of the last seconds may be missing: see --since)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if transport is not None:
            await transport.close()


async def _subscribe(broker_url: str, wanted: LogFilter) -> Transport:
    from dormant.transport import new_transport  # lazy: start-up time

    transport = new_transport(broker_url)
    try:
        await transport.connect()
        await transport.subscribe([wire.logs_filter(wanted.app_name, wanted.version)], qos=0)
    except BaseException:
        await transport.close()
        raise
    return transport


def _print_live(topic: str, payload: bytes, wanted: LogFilter, printer: Printer) -> None:
    import orjson  # lazy: start-up time

    source = wire.parse_logs_topic(topic)
    if source is None:
        return
    try:
        record = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return
    if isinstance(record, dict) and wanted.matches(source[0], source[1], record):
        printer(record)


async def _follow_catalog(catalog: Catalog, wanted: LogFilter, limit: int, printer: Printer) -> None:
    from dormant_catalog.function_logs import LogFollower  # lazy: start-up time

    follower = LogFollower(catalog.db, wanted, poll_s=CATALOG_POLL_S)
    await follower.start()
    follower.skip(await _print_recent(catalog, wanted, limit, printer))
    print(f"following {wanted.app_name}'s logs (Ctrl-C to stop)", file=sys.stderr, flush=True)
    async for row in follower.follow():
        printer(row.record)
