"""``ObservabilityServer``: a small HTTP server for processes that have none of their own (the controller
and the sidecar): ``GET /metrics`` (Prometheus text format), ``GET /healthz`` (liveness) and ``GET
/readyz`` (readiness), as described in ``dormant_telemetry.health``.

It reads one request per connection (GET or HEAD, the head at most 16 KiB, within 5 s), answers and
closes: Prometheus and Kubernetes probes need nothing more, and nothing here holds a connection.

The port comes from ``--metrics-port`` or ``DORMANT_METRICS_PORT`` (``metrics_port``): unset or empty
means no server; ``0`` an ephemeral port (the address is logged, and ``url`` has it). The address
(``--metrics-host`` / ``DORMANT_METRICS_HOST``) is 127.0.0.1 by default; a Kubernetes probe or a
Prometheus in another pod needs ``0.0.0.0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from .health import Check, Checks, report

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = logging.getLogger("dormant.telemetry")

PORT_ENV = "DORMANT_METRICS_PORT"
HOST_ENV = "DORMANT_METRICS_HOST"
DEFAULT_HOST = "127.0.0.1"
MAX_HEAD = 16 * 1024
READ_TIMEOUT_S = 5.0

_REASONS = {
    200: "OK",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def metrics_port(value: int | str | None = None) -> int | None:
    """The port to serve on: ``value`` (a flag) or ``$DORMANT_METRICS_PORT``; None: no server."""
    raw = value if value is not None else os.environ.get(PORT_ENV, "")
    if isinstance(raw, int):
        port = raw
    else:
        raw = raw.strip()
        if not raw:
            return None
        if not raw.isdigit():
            raise ValueError(f"{PORT_ENV} must be a port number (0: any free port), not {raw!r}")
        port = int(raw)
    if not 0 <= port <= 65535:
        raise ValueError(f"the metrics port must be between 0 and 65535, not {port}")
    return port


def metrics_host(value: str | None = None) -> str:
    return value or os.environ.get(HOST_ENV) or DEFAULT_HOST


async def _alive() -> list[Check]:
    return []


class ObservabilityServer:
    """Serve ``registry`` and the ``ready`` (and ``live``) checks of ``component``; see the module doc."""

    def __init__(
        self,
        component: str,
        *,
        registry: CollectorRegistry,
        ready: Checks,
        live: Checks = _alive,
        before_scrape: Callable[[], Awaitable[None]] | None = None,
        host: str = DEFAULT_HOST,
        port: int = 0,
    ) -> None:
        self.component = component
        self._registry = registry
        self._ready = ready
        self._live = live
        self._before_scrape = before_scrape
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (once started)."""
        if self._server is None or not self._server.sockets:
            return self._port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self._host in ("0.0.0.0", "") else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port, limit=MAX_HEAD)
        log.info("%s: /metrics, /healthz and /readyz on %s", self.component, self.url)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ObservabilityServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            if len(parts) != 3:
                return
            method, target = parts[0].decode("latin-1"), parts[1].decode("latin-1")
            path = target.split("?", 1)[0]
            status, content_type, body = await self._answer(method, path)
            reason = _REASONS.get(status, "")
            out = (
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\n"
                f"content-length: {len(body)}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n"
            ).encode("latin-1")
            writer.write(out if method == "HEAD" else out + body)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET and HEAD\n"
        try:
            if path == "/metrics":
                from .metrics import render  # lazy: start-up time (command lines read metrics_port)

                if self._before_scrape is not None:
                    await self._before_scrape()
                body, content_type = render(self._registry)
                return 200, content_type, body
            if path in ("/healthz", "/livez"):
                return self._json(*report(self.component, await self._live()))
            if path == "/readyz":
                return self._json(*report(self.component, await self._ready()))
        except Exception:
            log.exception("answering %s failed", path)
            return 500, "text/plain; charset=utf-8", b"internal error\n"
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz or /readyz\n"

    @staticmethod
    def _json(status: int, body: object) -> tuple[int, str, bytes]:
        return status, "application/json", json.dumps(body).encode() + b"\n"
