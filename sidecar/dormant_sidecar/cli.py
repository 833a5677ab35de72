"""Command line of ``python -m dormant_sidecar`` (the same options as ``dormant pod``)."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path

from dormant.config import Settings
from dormant_layers import UnpackLimits
from dormant_telemetry.endpoint import metrics_host, metrics_port

from .fetch import check_layer_store, default_work_dir
from .pod import Pod
from .run import configure_logging, serve_pod


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """Add the pod's options to ``parser`` (or a new one); defaults come from ``DORMANT_*`` variables."""
    parser = parser or argparse.ArgumentParser(
        prog="dormant pod", description="Run a pooled pod: claim replica slots and serve them."
    )
    parser.add_argument("--broker-url", help="MQTT broker (default $DORMANT_BROKER_URL)")
    parser.add_argument("--catalog-url", help="catalog database (default $DORMANT_CATALOG_URL)")
    parser.add_argument(
        "--layer-store",
        help="OCI layout dir or registry (oci://host[:port]/prefix) with the layers"
        " (default $DORMANT_LAYER_STORE)",
    )
    parser.add_argument("--work-dir", help="where layers are unpacked (default $DORMANT_WORK_DIR)")
    parser.add_argument(
        "--pod-id", default=os.environ.get("DORMANT_POD_ID"), help="default: host name + random"
    )
    parser.add_argument(
        "--base-image",
        action="append",
        dest="base_images",
        metavar="IMAGE",
        help="base runtime this pod provides (repeatable; default dormant-python:1)",
    )
    parser.add_argument(
        "--platform-interface",
        action="append",
        dest="platform_interfaces",
        metavar="IFACE",
        help="platform interface this pod provides (repeatable; default dormant/1)",
    )
    parser.add_argument("--lease", type=float, default=10.0, help="lease length in seconds (default 10)")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="claim poll interval (default 2 s)")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="drain timeout (default 30 s)")
    parser.add_argument(
        "--load-timeout", type=float, default=30.0, help="runtime load timeout (default 30 s)"
    )
    parser.add_argument(
        "--crash-backoff-reset",
        type=float,
        default=30.0,
        help="a runtime that ran this many seconds before crashing restarts without back-off (default 30)",
    )
    parser.add_argument(
        "--layer-max-bytes",
        type=int,
        default=None,
        help="most bytes one app layer may unpack to (default $DORMANT_LAYER_MAX_BYTES or 512 MiB)",
    )
    parser.add_argument(
        "--layer-max-entries",
        type=int,
        default=None,
        help="most files and dirs in one app layer (default $DORMANT_LAYER_MAX_ENTRIES or 20000)",
    )
    parser.add_argument(
        "--runtime-cmd",
        action="append",
        dest="runtime_cmds",
        metavar="[IMAGE=]CMD",
        help="runtime command line, for one base image (IMAGE=CMD, repeatable) or for every base image"
        " without one of its own (CMD); defaults: dormant-python:1 runs python -m dormant_runtime,"
        " dormant-node:1 runs node runtimes/node/dist/main.js ($DORMANT_NODE_RUNTIME overrides)",
    )
    parser.add_argument(
        "--metrics-port",
        default=None,
        help="serve /metrics, /healthz and /readyz on this port (0: any free one; default"
        " $DORMANT_METRICS_PORT, unset: not served)",
    )
    parser.add_argument(
        "--metrics-host", default=None, help="its address (default $DORMANT_METRICS_HOST or 127.0.0.1)"
    )
    parser.add_argument("--log-level", default=os.environ.get("DORMANT_LOG_LEVEL", "INFO"))
    return parser


_IMAGE_CMD = re.compile(r"([^\s=]+:[^\s=]+)=(.*)", re.DOTALL)


def runtime_commands(values: Sequence[str] | None) -> tuple[list[str] | None, dict[str, list[str]]]:
    """``--runtime-cmd`` values: the plain command (the last one given) and the per-image ones."""
    plain: list[str] | None = None
    per_image: dict[str, list[str]] = {}
    for value in values or ():
        match = _IMAGE_CMD.fullmatch(value.strip())
        if match is not None:
            per_image[match.group(1)] = shlex.split(match.group(2))
        else:
            plain = shlex.split(value)
        if (match is not None and not per_image[match.group(1)]) or (match is None and not plain):
            raise SystemExit(f"--runtime-cmd {value!r} has no command")
    return plain, per_image


def pod_from_args(args: argparse.Namespace) -> Pod:
    settings = Settings.from_env(
        broker_url=args.broker_url, catalog_url=args.catalog_url, layer_store=args.layer_store
    )
    work_dir = args.work_dir or os.environ.get("DORMANT_WORK_DIR") or default_work_dir(settings.layer_store)
    # Flags win over DORMANT_LAYER_MAX_*; a bad value fails here, at start-up, not at the first fetch.
    try:
        from_env = UnpackLimits.from_env()
        check_layer_store(settings.layer_store)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    max_bytes, max_entries = getattr(args, "layer_max_bytes", None), getattr(args, "layer_max_entries", None)
    for flag, name in ((max_bytes, "--layer-max-bytes"), (max_entries, "--layer-max-entries")):
        if flag is not None and flag < 1:
            raise SystemExit(f"{name} must be at least 1")
    plain_cmd, image_cmds = runtime_commands(getattr(args, "runtime_cmds", None))
    limits = UnpackLimits(
        max_bytes=from_env.max_bytes if max_bytes is None else max_bytes,
        max_entries=from_env.max_entries if max_entries is None else max_entries,
    )
    return Pod(
        broker_url=settings.broker_url,
        catalog_url=settings.catalog_url,
        layer_store=settings.layer_store,
        work_dir=Path(work_dir),
        pod_id=args.pod_id,
        base_images=args.base_images or ("dormant-python:1",),
        platform_interfaces=args.platform_interfaces or ("dormant/1",),
        lease_s=args.lease,
        poll_interval_s=args.poll_interval,
        drain_timeout_s=args.drain_timeout,
        load_timeout_s=args.load_timeout,
        crash_backoff_reset_s=args.crash_backoff_reset,
        runtime_cmd=plain_cmd,
        runtime_cmds=image_cmds,
        layer_limits=limits,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    pod = pod_from_args(args)
    try:
        port = metrics_port(args.metrics_port)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    try:
        asyncio.run(serve_pod(pod, metrics_port=port, metrics_host=metrics_host(args.metrics_host)))
    except KeyboardInterrupt:
        return 130
    return 0
