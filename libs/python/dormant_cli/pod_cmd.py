"""``dormant pod``: run one pooled pod (sidecar + runtime) in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import Subparsers, add_command, add_settings_flags, fail, settings_from


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "pod",
        help="run one pooled pod that claims a replica slot and serves it",
        example="dormant pod --pod-id pod-3     # one more pod in the pool (see `dormant pods`)",
    )
    p.add_argument("--pod-id", default=None, help="its name in `dormant pods` (default: host name + random)")
    p.add_argument(
        "--work-dir", type=Path, default=None, help="where layers are unpacked (default: a temp dir)"
    )
    p.add_argument("--lease", type=float, default=10.0, help="lease length in seconds")
    p.add_argument(
        "--metrics-port",
        default=None,
        help="serve /metrics, /healthz and /readyz on this port (0: any free one; default"
        " $DORMANT_METRICS_PORT, unset: not served)",
    )
    p.add_argument(
        "--metrics-host", default=None, help="its address (default $DORMANT_METRICS_HOST or 127.0.0.1)"
    )
    add_settings_flags(p, broker=True, catalog=True, layers=True)
    p.set_defaults(run=run_pod_cmd)


def run_pod_cmd(args: argparse.Namespace) -> int:
    import tempfile  # lazy: start-up time

    from dormant_sidecar import run_pod  # lazy: start-up time
    from dormant_telemetry.endpoint import metrics_host, metrics_port  # lazy: start-up time

    settings = settings_from(args)
    try:
        port = metrics_port(args.metrics_port)
    except ValueError as exc:
        return fail(str(exc))
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="dormant-pod-"))
    return run_pod(
        broker_url=settings.broker_url,
        catalog_url=settings.catalog_url,
        layer_store=settings.layer_store,
        work_dir=work_dir,
        pod_id=args.pod_id,
        lease_s=args.lease,
        metrics_port=port,
        metrics_host=metrics_host(args.metrics_host),
    )
