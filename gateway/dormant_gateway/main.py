"""Running one gateway process: flags, logging, uvicorn (`dormant gateway`, `python -m dormant_gateway`)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ssl

    import uvicorn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=None, help="HTTP port (env DORMANT_GATEWAY_PORT, default 8080)"
    )
    parser.add_argument("--broker-url", help="MQTT broker (env DORMANT_BROKER_URL)")
    parser.add_argument("--catalog-url", help="Postgres catalog (env DORMANT_CATALOG_URL)")
    parser.add_argument("--layer-store", type=Path, help="OCI layout directory (env DORMANT_LAYER_STORE)")
    parser.add_argument(
        "--state-dir", type=Path, help="where the dev signing key lives (env DORMANT_STATE_DIR)"
    )
    parser.add_argument("--rabbitmq-url", help="RabbitMQ for queue triggers (env DORMANT_RABBITMQ_URL)")
    parser.add_argument("--replica-id", default=None, help="name of this replica in worker leases")
    parser.add_argument(
        "--tls-cert",
        type=Path,
        metavar="FILE",
        help="serve HTTPS with this PEM certificate (chain) (env DORMANT_GATEWAY_TLS_CERT)",
    )
    parser.add_argument(
        "--tls-key",
        type=Path,
        metavar="FILE",
        help="its PEM private key, unless the certificate file holds it (env DORMANT_GATEWAY_TLS_KEY)",
    )
    parser.add_argument(
        "--no-workers", action="store_true", help="serve HTTP only: no async, cron or queue workers here"
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("DORMANT_LOG_LEVEL", "info").lower(),
        choices=["debug", "info", "warning", "error", "critical"],
        help="the lowest level logged (default $DORMANT_LOG_LEVEL or info)",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from dormant_telemetry.logs import configure_logging, parse_level  # lazy: start-up time
    from dormant_telemetry.tracing import configure_tracing  # lazy: start-up time

    from .app import create_app  # lazy: start-up time
    from .config import GatewayConfig  # lazy: start-up time
    from .server import guarded_h11  # lazy: start-up time

    try:
        config = GatewayConfig.from_env(
            host=args.host,
            port=args.port,
            broker_url=args.broker_url,
            catalog_url=args.catalog_url,
            layer_store=args.layer_store,
            state_dir=args.state_dir,
            rabbitmq_url=args.rabbitmq_url,
            replica_id=args.replica_id,
            workers=False if args.no_workers else None,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
        )
    except ValueError as exc:  # a setting the server cannot use: say which, before anything starts
        print(f"dormant gateway: error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:  # JSON lines, or plain text on a terminal (DORMANT_LOG_FORMAT decides otherwise)
        level = parse_level(args.log_level)
        configure_logging("gateway", level)
    except ValueError as exc:
        print(f"dormant gateway: error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:  # OTLP traces when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set
        configure_tracing("dormant-gateway", attributes={"dormant.component": "gateway"})
    except ValueError as exc:
        print(f"dormant gateway: error: {exc}", file=sys.stderr, flush=True)
        return 2
    scheme = "https" if config.tls else "http"
    print(f"dormant gateway on {scheme}://{config.host}:{config.port}", file=sys.stderr, flush=True)
    limits = config.server
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=level.lower(),
        log_config=None,  # uvicorn's records go through the root logger's handler, in the same format
        access_log=False,
        lifespan="on",
        loop="asyncio",  # the native MQTT client needs asyncio transports (not uvloop)
        # h11 with a request read timeout and a connection cap (server.py); uvicorn's own limits:
        http=guarded_h11(read_timeout_s=limits.read_timeout_s, max_connections=limits.max_connections),
        timeout_keep_alive=max(1, round(limits.keep_alive_s)),
        limit_concurrency=limits.max_connections + 1,  # in-flight requests; connections: the cap above
        h11_max_incomplete_event_size=32 * 1024,  # request line and headers
        # HTTPS: config.check_tls_files made this same load at start, so unusable files were refused there.
        ssl_certfile=config.tls_cert,
        ssl_keyfile=config.tls_key,
        ssl_context_factory=tls_context if config.tls else None,
    )
    return 0


def tls_context(config: uvicorn.Config, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's server context (certificate, key, ALPN) with TLS 1.2 as the lowest version, set here
    rather than left to the defaults of the Python build and the OpenSSL configuration."""
    import ssl  # stdlib, here: the CLI imports this module at start and only HTTPS needs ssl

    context = default()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dormant_gateway", description="Run a Dormant gateway.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
