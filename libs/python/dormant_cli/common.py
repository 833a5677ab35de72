"""What the CLI's subcommands share: declaring a subcommand (help, example), the settings flags, and
running work against the catalog with its expected failures turned into ``CommandError``.

``CommandError`` is an expected failure (the catalog is unreachable, no such service, a refused
request): ``dormant_cli.main`` prints it as one line, ``error: ...``, and exits 1, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from dormant.config import Settings
from dormant.errors import DormantError

from . import reach
from .output import print_json as print_json

if TYPE_CHECKING:
    from dormant_catalog import Catalog

T = TypeVar("T")
CATALOG_TIMEOUT_S = 5.0
"""How long a command waits to connect to the catalog before saying it cannot reach it."""

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """An expected failure, shown as ``error: <message>`` on one line (exit status ``code``)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_command(
    sub: Subparsers, name: str, *, help: str, example: str, description: str | None = None
) -> argparse.ArgumentParser:
    """A subcommand whose ``--help`` says what it does and ends with an example (``example`` holds
    one command per line; ``#`` comments are kept)."""
    lines = "\n".join(f"  {line}" for line in example.strip().splitlines())
    return sub.add_parser(
        name,
        help=help,
        description=description or (help[:1].upper() + help[1:] + ".").replace("%%", "%"),
        epilog=f"example:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def add_settings_flags(
    parser: argparse.ArgumentParser, *, broker: bool = False, catalog: bool = False, layers: bool = False
) -> None:
    if broker:
        parser.add_argument(
            "--broker-url",
            help="MQTT broker (env DORMANT_BROKER_URL; default: the running dev mesh, else"
            " mqtt://127.0.0.1:1883)",
        )
    if catalog:
        parser.add_argument(
            "--catalog-url", help="Postgres catalog (env DORMANT_CATALOG_URL; default: the running dev mesh)"
        )
    if layers:
        parser.add_argument(
            "--layer-store",
            help="OCI layout directory, or registry oci://host[:port]/prefix (env DORMANT_LAYER_STORE)",
        )


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON (stable keys) instead of a table")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        broker_url=getattr(args, "broker_url", None),
        catalog_url=getattr(args, "catalog_url", None),
        layer_store=getattr(args, "layer_store", None),
    )


def print_error(error: DormantError) -> None:
    """A typed error on stderr, on one line: ``error: Type: message``."""
    print(f"error: {error.type}: {error.message}", file=sys.stderr)


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def with_catalog(
    args: argparse.Namespace, work: Callable[[Catalog], Awaitable[T]], *, read_only: bool = False
) -> T:
    """``await work(catalog)`` on the catalog the settings name, closed after. The catalog is migrated
    first unless ``read_only`` (a read never changes a database, even one with no catalog in it).

    Raises ``CommandError`` when the catalog cannot be reached (naming the URL, where it came from and
    how to point elsewhere) and for the catalog's refusals (no such service, invalid request).
    """
    import psycopg  # lazy: start-up time

    from dormant_catalog import CatalogError, open_catalog  # lazy: start-up time

    url = settings_from(args).catalog_url

    async def go() -> T:
        if read_only:  # fail at once when nothing answers (the pool would retry until its timeout)
            probe = await psycopg.AsyncConnection.connect(url, connect_timeout=int(CATALOG_TIMEOUT_S))
            await probe.close()
        catalog = await open_catalog(url, migrate=not read_only, connect_timeout_s=CATALOG_TIMEOUT_S)
        try:
            return await work(catalog)
        finally:
            await catalog.close()

    try:
        return asyncio.run(go())
    except (CatalogError, OSError, psycopg.OperationalError, psycopg.errors.UndefinedTable) as exc:
        raise catalog_failure(args, exc) from exc


def catalog_failure(args: argparse.Namespace, exc: BaseException) -> CommandError:
    """The one line for an expected catalog failure: it cannot be reached (the URL, where it came from,
    how to point elsewhere), it holds no catalog, or it refused the request (its own message)."""
    import psycopg  # lazy: start-up time

    from dormant_catalog import CatalogError, CatalogUnavailable  # lazy: start-up time

    url = settings_from(args).catalog_url
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return CommandError(
            f"the database at {reach.redact(url)} holds no Dormant catalog yet: publish a service"
            " (`dormant publish DIR`), or point elsewhere with DORMANT_CATALOG_URL or --catalog-url"
        )
    if isinstance(exc, CatalogError) and not isinstance(exc, CatalogUnavailable):
        return CommandError(str(exc))
    if "conflict" in str(exc):  # reached, but the statement lost a race: the message says retry
        return CommandError(str(exc))
    return CommandError(reach.unreachable("catalog", url, reach.source_of(args, "catalog"), exc))


def show(args: argparse.Namespace, data: Any, render: Callable[[], None]) -> int:
    """``--json``: ``data`` as JSON; otherwise ``render()`` (a table). Exit status 0."""
    if getattr(args, "json", False):
        print_json(data)
    else:
        render()
    return 0
