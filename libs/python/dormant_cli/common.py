"""Flags and output helpers shared by the CLI's subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from dormant.config import Settings
from dormant.errors import DormantError


def add_settings_flags(
    parser: argparse.ArgumentParser, *, broker: bool = False, catalog: bool = False, layers: bool = False
) -> None:
    if broker:
        parser.add_argument(
            "--broker-url", help="MQTT broker (env DORMANT_BROKER_URL, default mqtt://127.0.0.1:1883)"
        )
    if catalog:
        parser.add_argument("--catalog-url", help="Postgres catalog (env DORMANT_CATALOG_URL)")
    if layers:
        parser.add_argument("--layer-store", help="OCI layout directory (env DORMANT_LAYER_STORE)")


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        broker_url=getattr(args, "broker_url", None),
        catalog_url=getattr(args, "catalog_url", None),
        layer_store=getattr(args, "layer_store", None),
    )


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


def print_error(error: DormantError) -> None:
    """A typed error on stderr: one line, then its JSON payload."""
    print(f"error: {error.type}: {error.message}", file=sys.stderr)
    json.dump(error.to_payload(), sys.stderr, ensure_ascii=False)
    sys.stderr.write("\n")


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1
