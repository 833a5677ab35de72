"""``dormant generate``, ``dormant build`` and ``dormant publish``: from a service directory to a version."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .common import CommandError, Subparsers, add_command, add_settings_flags, catalog_failure, settings_from
from .output import progress

if TYPE_CHECKING:
    from dormant_catalog import CompatibilityRecord
    from dormant_codegen.publish import Published
    from dormant_layers import Store

DIR_HELP = "the service directory (its schemas/ folder and handler module), e.g. examples/user-service"


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "generate",
        help="generate models, dispatch glue and interface.json for a service",
        example=(
            "dormant generate examples/user-service\n"
            "dormant generate --check examples/user-service   # in CI: exit 1 when stale"
        ),
    )
    p.add_argument("dir", type=Path, help=DIR_HELP)
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if the output is stale")
    p.set_defaults(run=run_generate)

    p = add_command(
        sub,
        "build",
        help="pack the service into a deterministic OCI app layer and print its digest",
        example="dormant build examples/user-service",
    )
    p.add_argument("dir", type=Path, help=DIR_HELP)
    _add_import_check_flag(p)
    add_settings_flags(p, layers=True)
    p.set_defaults(run=run_build)

    p = add_command(
        sub,
        "publish",
        help="build the service and register it as a new immutable version",
        example="dormant publish examples/user-service     # prints: published user-service vN",
    )
    p.add_argument("dir", type=Path, help=DIR_HELP)
    _add_import_check_flag(p)
    add_settings_flags(p, catalog=True, layers=True)
    p.set_defaults(run=run_publish)


def _add_import_check_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--no-import-check",
        dest="import_check",
        action="store_false",
        help="do not import the service before building (for packages only the runtime image has)",
    )


def run_generate(args: argparse.Namespace) -> int:
    from dormant_codegen import CodegenError, generate  # lazy: start-up time

    try:
        result = generate(args.dir, check=args.check)
    except CodegenError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return 1
    if args.check:
        if result.stale:
            for name in result.stale:
                print(f"stale: {name}", file=sys.stderr)
            print(
                f"error: generated code in {args.dir} is stale; run `dormant generate {args.dir}`",
                file=sys.stderr,
            )
            return 1
        print(f"up to date: {args.dir}")
        return 0
    print(f"generated {args.dir / 'generated'} ({result.interface_hash})")
    return 0


def open_layer_store(location: str | Path) -> Store:
    """The layer store at ``location`` (a directory or ``oci://…``); ``CommandError`` when it cannot work."""
    from dormant_layers import open_store  # lazy: start-up time

    try:
        return open_store(location)
    except ValueError as exc:
        raise CommandError(f"layer store: {exc}") from None


def store_failure(store: object, exc: Exception) -> CommandError:
    """A layer store error (registry down, credentials refused, corrupt blob) as one line."""
    return CommandError(f"layer store {store}: {exc}")


def run_build(args: argparse.Namespace) -> int:
    from dormant_codegen import CodegenError, build  # lazy: start-up time
    from dormant_layers import LayerStoreError  # lazy: start-up time

    settings = settings_from(args)
    store = open_layer_store(settings.layer_store)
    try:
        with progress(f"building {args.dir}", piped=False):
            result = build(args.dir, store, import_check=args.import_check)
    except CodegenError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return 1
    except LayerStoreError as exc:
        raise store_failure(store, exc) from exc
    print(result.ref.layer_digest)
    print(f"image {result.ref} in {store}", file=sys.stderr)
    return 0


async def publish(
    service_dir: Path,
    catalog_url: str,
    layer_store: str | Path,
    actor: str = "cli",
    *,
    import_check: bool = True,
) -> tuple[str, int]:
    """Build ``service_dir`` into ``layer_store`` (a directory or ``oci://…``; importing it first, unless
    ``import_check`` is off) and register it; the image is tagged ``v<version>`` in the store.

    Returns (service name, version). When the built image is the one the latest version already has,
    that version is returned. Raises ``CommandError`` for a layer store that fails.
    """
    published = await publish_build(service_dir, catalog_url, layer_store, actor, import_check=import_check)
    return published.service, published.version


async def publish_build(
    service_dir: Path,
    catalog_url: str,
    layer_store: str | Path,
    actor: str = "cli",
    *,
    import_check: bool = True,
) -> Published:
    """``publish``, returning what was published (with its interface verdict)."""
    from dormant_catalog import open_catalog  # lazy: start-up time
    from dormant_codegen import build  # lazy: start-up time
    from dormant_codegen.publish import register_build  # lazy: start-up time
    from dormant_layers import LayerStoreError  # lazy: start-up time

    store = open_layer_store(layer_store)
    try:
        # Build (and import-check) first: a service that does not build never waits on the catalog.
        result = await asyncio.to_thread(build, service_dir, store, import_check=import_check)
        catalog = await open_catalog(catalog_url)
        try:
            # Like AWS Lambda's PublishVersion: unchanged code and interface publish no new version.
            published = await register_build(result, db=catalog.db, actor=actor, store=store)
        finally:
            await catalog.close()
    except LayerStoreError as exc:
        raise store_failure(store, exc) from exc
    return published


def run_publish(args: argparse.Namespace) -> int:
    from dormant_catalog import CatalogError  # lazy: start-up time
    from dormant_codegen import CodegenError  # lazy: start-up time

    settings = settings_from(args)
    try:
        # A terminal sees a spinner; piped, stderr keeps only the diagnostics (scripts read them).
        with progress(f"building and publishing {args.dir}", piped=False):
            published = asyncio.run(
                publish_build(
                    args.dir, settings.catalog_url, settings.layer_store, import_check=args.import_check
                )
            )
    except CodegenError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return 1
    except (CatalogError, OSError) as exc:
        raise catalog_failure(args, exc) from exc
    print(f"published {published.service} v{published.version}")
    if published.compatibility is not None:
        print(compatibility_line(published.compatibility), file=sys.stderr)
    return 0


def compatibility_line(record: CompatibilityRecord) -> str:
    """What ``dormant publish`` says (on stderr) about the version's interface verdict."""
    head = f"interface: schema version {record.schema_version}"
    if record.compared_to is None:
        return f"{head} (nothing to compare with)"
    if not record.breaking:
        return f"{head}, compatible with v{record.compared_to}"
    lines = [f"{head}, BREAKING against v{record.compared_to}:"]
    lines += [f"  {f.get('path')}: {f.get('rule')}: {f.get('message')}" for f in record.breaks]
    if record.approved:
        lines.append(f"approved by {record.approved_by}")
    else:
        lines.append(
            f"it goes live only once approved: dormant approve {record.app_name} {record.version}"
            f" (dormant diff {record.app_name} shows it again)"
        )
    return "\n".join(lines)
