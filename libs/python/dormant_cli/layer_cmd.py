"""``dormant layer``: shared layers (FR-FN-009): publish a version of a layer, list them, attach them.

``publish DIR`` packs the folder's ``python/`` (the seed's ``layer.zip`` layout) into the layer store
(a directory or a registry), registers the next immutable version of the layer (the latest one when the
content is the same) and tags the image with it;
``attach SVC name:version …`` sets the service's layers, in order (at most 5, 250 MB in all; none
given detaches them all), and every replica reloads with them; ``list [NAME]`` shows the versions.
The same records as the gateway's ``/api/v1/layers`` and ``PUT /api/v1/functions/{name}/layers``
(``dormant_catalog.layers``).
"""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import Any

from .build_cmds import open_layer_store, store_failure
from .common import (
    CommandError,
    Subparsers,
    add_command,
    add_json_flag,
    add_settings_flags,
    settings_from,
    show,
    with_catalog,
)
from .output import Column, print_table


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "layer",
        help="shared layers: publish a version, list them, attach them to a service (in order)",
        example="dormant layer publish ./utils-layer --name utils\n"
        "dormant layer attach user-service utils:1\ndormant layer list",
    )
    actions = p.add_subparsers(dest="layer_action", required=True, metavar="ACTION")
    publish = add_command(
        actions,
        "publish",
        help="register the next version of a layer from a folder holding python/",
        example="dormant layer publish ./utils-layer --name utils",
    )
    publish.add_argument("dir", type=Path, help="the folder holding python/ (what goes on the import path)")
    publish.add_argument("--name", help="the layer's name (default: the folder's name)")
    publish.add_argument("--description", default="", help="what the layer holds")
    add_settings_flags(publish, catalog=True, layers=True)
    attach = add_command(
        actions,
        "attach",
        help="set a service's layers, in import order (none given: detach all); every replica reloads",
        example="dormant layer attach user-service utils:2 tracing:1",
    )
    attach.add_argument("service", help="the service (as published)")
    attach.add_argument("layers", nargs="*", metavar="NAME:VERSION", help="layer versions, first wins")
    add_settings_flags(attach, catalog=True)
    list_ = add_command(
        actions, "list", help="layer versions (of NAME, or all)", example="dormant layer list"
    )
    list_.add_argument("name", nargs="?", help="one layer")
    add_settings_flags(list_, catalog=True)
    for parser in (publish, attach, list_):
        add_json_flag(parser)
    for parser in (publish, attach):
        parser.add_argument("--actor", help="who changes it, for the audit log (default cli:<login name>)")
    publish.set_defaults(run=run_publish)
    attach.set_defaults(run=run_attach)
    list_.set_defaults(run=run_list)


def _view(record: Any) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "reference": record.reference,
        "image": record.layer_image,
        "unpackedBytes": record.unpacked_bytes,
        "description": record.description,
    }


def run_publish(args: argparse.Namespace) -> int:
    from dormant_catalog import layers  # lazy: start-up time
    from dormant_codegen.dependencies import push_shared_layer, tag_version  # lazy: start-up time
    from dormant_layers import LayerStoreError  # lazy: start-up time

    name = args.name or Path(args.dir).resolve().name
    store = open_layer_store(settings_from(args).layer_store)
    try:
        layers.check_layer_name(name)
        image, size = push_shared_layer(Path(args.dir), name, store)
    except LayerStoreError as exc:
        raise store_failure(store, exc) from exc
    except (ValueError, OSError) as exc:
        raise CommandError(str(exc)) from exc
    actor = args.actor or f"cli:{getpass.getuser()}"

    async def register(catalog: Any) -> tuple[Any, bool]:
        result: tuple[Any, bool] = await catalog.db.run(
            layers.publish_layer_version,
            name,
            layer_image=image,
            unpacked_bytes=size,
            description=args.description,
            actor=actor,
        )
        return result

    record, created = with_catalog(args, register)
    try:
        tag_version(store, image, record.version)
    except LayerStoreError as exc:
        raise store_failure(store, exc) from exc
    data = {**_view(record), "created": created}

    def render() -> None:
        verb = "published" if created else "unchanged, still"
        print(f"{verb} layer {record.reference} ({record.unpacked_bytes} bytes unpacked)")

    return show(args, data, render)


def run_attach(args: argparse.Namespace) -> int:
    from dormant_catalog import layers  # lazy: start-up time

    actor = args.actor or f"cli:{getpass.getuser()}"

    async def attach(catalog: Any) -> tuple[list[Any], int]:
        result: tuple[list[Any], int] = await catalog.db.run(
            layers.attach_layers, args.service, list(args.layers), actor=actor
        )
        return result

    records, rolled = with_catalog(args, attach)
    data = {"service": args.service, "layers": [_view(r) for r in records], "slotsRolled": rolled}

    def render() -> None:
        shown = ", ".join(r.reference for r in records) or "none"
        print(f"{args.service}: layers {shown}; {rolled} replica slot(s) reload with them")

    return show(args, data, render)


def run_list(args: argparse.Namespace) -> int:
    from dormant_catalog import layers  # lazy: start-up time

    records = with_catalog(args, lambda c: c.db.run(layers.list_layer_versions, args.name), read_only=True)

    def render() -> None:
        rows = [[r.reference, str(r.unpacked_bytes), r.description] for r in records]
        columns = [Column("LAYER"), Column("BYTES", justify="right"), Column("DESCRIPTION")]
        print_table(columns, rows, empty="no layers")

    return show(args, {"items": [_view(r) for r in records]}, render)
