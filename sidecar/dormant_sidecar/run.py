"""Running a pod as a program: SIGTERM/SIGINT drain it instead of killing it.

``run_pod(...)`` (synchronous, what ``dormant pod`` calls) builds a ``Pod`` from the same keyword
arguments and runs it to completion; ``serve_pod(pod)`` does the same inside a running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from pathlib import Path

from dormant_telemetry import logs as telemetry_logs

from .logs import LogSink, stderr_sink
from .observe import PodObserver
from .pod import Pod

log = logging.getLogger("dormant.sidecar")


def configure_logging(level: str | None = None) -> None:
    """Pod log lines on stderr: JSON lines, or plain text on a terminal (``dormant_telemetry.logs``;
    ``DORMANT_LOG_FORMAT`` decides otherwise); a bad level or format stops the program with the reason."""
    try:
        telemetry_logs.configure_logging("sidecar", level)
    except ValueError as exc:
        raise SystemExit(f"dormant pod: {exc}") from None
    # The pool logs every failed reconnect; the pod reports an outage once, and when it ends.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)


async def serve_pod(pod: Pod, *, metrics_port: int | None = None, metrics_host: str = "127.0.0.1") -> None:
    """Install SIGTERM/SIGINT handlers that call ``pod.stop()``, then run the pod to completion. Its
    health goes to the catalog; with ``metrics_port`` it also serves ``/metrics``, ``/healthz`` and
    ``/readyz`` there (``observe``)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if pod.stopping:
            log.warning("%s again: still draining (send SIGKILL to stop at once)", signum.name)
        else:
            log.info("%s: draining pod %s", signum.name, pod.pod_id)
        pod.stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    observer = PodObserver(pod, host=metrics_host, port=metrics_port)
    await observer.start()
    try:
        await pod.run()
    finally:
        await observer.close()
        for signum in installed:
            loop.remove_signal_handler(signum)


def run_pod(
    *,
    broker_url: str,
    catalog_url: str,
    layer_store: Path,
    work_dir: Path,
    pod_id: str | None = None,
    base_images: Sequence[str] = ("dormant-python:1",),
    platform_interfaces: Sequence[str] = ("dormant/1",),
    lease_s: float = 10.0,
    poll_interval_s: float = 2.0,
    drain_timeout_s: float = 30.0,
    runtime_cmd: Sequence[str] | None = None,
    load_timeout_s: float = 30.0,
    log_sink: LogSink = stderr_sink,
    metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
) -> int:
    """Run one pod in the foreground until SIGTERM/SIGINT; returns the process exit code."""
    configure_logging()
    pod = Pod(
        broker_url=broker_url,
        catalog_url=catalog_url,
        layer_store=layer_store,
        work_dir=work_dir,
        pod_id=pod_id,
        base_images=base_images,
        platform_interfaces=platform_interfaces,
        lease_s=lease_s,
        poll_interval_s=poll_interval_s,
        drain_timeout_s=drain_timeout_s,
        runtime_cmd=runtime_cmd,
        load_timeout_s=load_timeout_s,
        log_sink=log_sink,
    )
    try:
        asyncio.run(serve_pod(pod, metrics_port=metrics_port, metrics_host=metrics_host))
    except KeyboardInterrupt:
        return 130
    return 0
