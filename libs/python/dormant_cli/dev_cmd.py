"""``dormant dev``: the whole mesh on one machine, in one command.

Starts a local Postgres (unless a catalog URL is given) and a private Mosquitto with Dormant's broker
config (unless a broker URL is given): secured, every process on an account of its own
(``dev_broker``), or open with ``--insecure-broker``. It uses a local OCI layout as the layer store,
starts ``--pods`` pooled pods, a gateway and the rollout controller (so ``dormant deploy --strategy
...`` rollouts run), brings up the service in each DIR (default: the example; ``dev_service``: published
and deployed on ``--replicas`` slots, unless a restart finds it published and live already; a TypeScript
service gets ``--replicas`` Node pods of its own, base runtime ``dormant-node:1``), waits until each
answers, records the mesh in ``STATE/mesh.json`` (which the other commands read), prints how to call it
and the line ``ready``. With ``--watch`` every saved change to a handler or schema is
rebuilt, published and deployed. Ctrl-C stops every child.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from dormant.config import parse_broker_url, redact_url
from dormant.errors import DormantError, NotFound, Unauthenticated

from .common import Subparsers, add_command, add_settings_flags, fail
from .dev_broker import INSECURE_WARNING, BrokerUrls, dev_broker_plan, write_private

if TYPE_CHECKING:
    from dormant_local.broker_security import TlsFiles

    from .dev_service import DevService

PR_SET_PDEATHSIG = 1
SERVING_TIMEOUT_S = 90.0
DEV_USER = "developer"
DEV_ROLE = "developer"
DEV_TOKEN_MINUTES = 720
"""The developer token in env.sh and the mesh's token file lives 12 hours; `dormant token` makes more."""


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "dev",
        help="run the local mesh (Postgres, Mosquitto, pods) serving the service in DIR",
        description="Run the whole mesh on this machine and serve the service in DIR. A restart on the "
        "same --state-dir keeps what is published and live: no new version, no redeploy.",
        example="dormant dev                                # the example, examples/user-service\n"
        "dormant dev hello-service --watch          # every saved edit goes live\n"
        "dormant dev examples/user-service examples/greeter-node   # a Node service beside it\n"
        "dormant dev --pods 8 --replicas 4          # room for the rollouts in docs/rollouts.md",
    )
    p.add_argument(
        "dir",
        nargs="*",
        type=Path,
        default=[],
        help="the service directories to serve, Python or TypeScript (Node.js) services (default:"
        " examples/user-service); with a TypeScript one, Node pods start beside the Python ones",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="rebuild, publish and deploy on every saved change to a *.py module or schemas/*.json",
    )
    p.add_argument("--pods", type=int, default=2, help="pooled pods to start (default 2)")
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="replica slots for the service (default 1; the other pods wait in the pool)",
    )
    p.add_argument(
        "--broker-port", type=int, default=None, help="port of the private broker (default: a free one)"
    )
    p.add_argument(
        "--insecure-broker",
        action="store_true",
        help="run the private broker open, as before it was secured: anyone on this machine may connect"
        " anonymously, read every reply and publish route tables (a warning says so)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="run the mesh over TLS with a CA of its own (STATE/mosquitto/tls/ca.pem): the broker's two"
        " listeners (components also present a client certificate the CA signed: mutual TLS) and the"
        " gateway (HTTPS, HSTS)",
    )
    p.add_argument("--state-dir", type=Path, default=Path(".dormant/dev"), help="data of the local mesh")
    p.add_argument("--lease", type=float, default=5.0, help="slot lease length in seconds")
    p.add_argument(
        "--rabbitmq",
        action="store_true",
        help="also start a private RabbitMQ node for queue triggers (its URL goes in mesh.json and env.sh;"
        " default: DORMANT_RABBITMQ_URL if set, else queue triggers are refused)",
    )
    p.add_argument(
        "--secrets",
        action="store_true",
        help="also start a private OpenBao (bao server -dev, in memory) for ${SECRET:...} references in"
        " functions' environments (its address and admin token go in env.sh, mode 0600)",
    )
    p.add_argument(
        "--nats",
        action="store_true",
        help="also start a private nats-server with JetStream for stream triggers (its URL goes in"
        " mesh.json and env.sh; default: DORMANT_NATS_URL if set, else stream triggers are refused)",
    )
    add_settings_flags(p, broker=True, catalog=True, layers=True)
    p.set_defaults(run=run_dev)


def default_service_dir() -> Path | None:
    """``examples/user-service`` from the current directory or the source checkout."""
    candidates = [
        Path.cwd() / "examples" / "user-service",
        Path(__file__).resolve().parents[3] / "examples" / "user-service",
    ]
    return next((c for c in candidates if (c / "schemas").is_dir()), None)


def run_dev(args: argparse.Namespace) -> int:
    service_dirs: list[Path] = list(args.dir)
    if not service_dirs:
        default = default_service_dir()
        if default is None:
            return fail("no service directory: pass one, e.g. `dormant dev examples/user-service`")
        service_dirs = [default]
    for service_dir in service_dirs:
        if not service_dir.is_dir():
            return fail(f"{service_dir} is not a service directory")
    if len({d.resolve() for d in service_dirs}) != len(service_dirs):
        return fail("a service directory is given twice")
    if args.pods < 1:
        return fail("--pods must be at least 1")
    if args.replicas < 1:
        return fail("--replicas must be at least 1")
    if args.replicas > args.pods:
        return fail(f"--replicas {args.replicas} needs at least as many pods: add --pods {args.replicas}")
    try:
        return asyncio.run(_dev(args, service_dirs))
    except KeyboardInterrupt:
        return 0


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the ``dormant dev`` process dies, whatever kills it.

    The children also run in sessions of their own, so a terminal's Ctrl-C reaches only ``dormant
    dev``, which stops them in order (a runtime still importing would print a KeyboardInterrupt)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _dev(args: argparse.Namespace, service_dirs: list[Path]) -> int:
    from dormant_catalog import CatalogError, open_catalog  # lazy: start-up time
    from dormant_codegen import CodegenError  # lazy: start-up time
    from dormant_codegen.node import NODE_BASE_RUNTIME, is_node_service  # lazy: start-up time
    from dormant_local import free_port  # lazy: start-up time
    from dormant_local.broker import (  # lazy: start-up time
        DynsecPluginNotFound,
        MosquittoNotInstalled,
        MosquittoProcess,
    )
    from dormant_local.oidc import OidcProvider, OidcProviderNotInstalled  # lazy: start-up time

    from .dev_service import DevService, step, watch_changes  # lazy: start-up time

    state = args.state_dir.resolve()
    state.mkdir(parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    async with contextlib.AsyncExitStack() as stack:
        catalog_url = args.catalog_url or os.environ.get("DORMANT_CATALOG_URL")
        if not catalog_url:
            from dormant_local.postgres import LocalPostgres  # lazy: start-up time

            pg = LocalPostgres(data_dir=state / "postgres")
            first = not (pg.pgdata / "PG_VERSION").exists()
            async with step("creating and starting local Postgres" if first else "starting local Postgres"):
                await pg.start()
            stack.push_async_callback(pg.stop)
            catalog_url = await pg.create_database("dormant")
        broker_url = args.broker_url or os.environ.get("DORMANT_BROKER_URL")
        urls = BrokerUrls.same(broker_url) if broker_url else None
        tls_files: TlsFiles | None = None  # the mesh CA and its server certificate, with --tls
        if urls is not None and args.tls:
            return fail("--tls runs the mesh's own broker: it cannot be combined with --broker-url")
        if args.tls and args.insecure_broker:
            return fail("--tls needs the secured broker: drop --insecure-broker")
        if urls is None:
            security = None if args.insecure_broker else dev_broker_plan(state / "mosquitto")
            if security is None:
                print(INSECURE_WARNING, file=sys.stderr)
            try:
                broker = MosquittoProcess(
                    port=args.broker_port,
                    data_dir=state / "mosquitto",
                    log_file=state / "mosquitto.log",
                    security=security,
                    tls=args.tls,
                    mutual_tls=args.tls,
                )
            except MosquittoNotInstalled as exc:
                return fail(str(exc))
            try:
                async with step("starting Mosquitto"):
                    await broker.start()
            except (DynsecPluginNotFound, RuntimeError) as exc:
                return fail(str(exc).splitlines()[0])
            stack.push_async_callback(broker.stop)
            urls = BrokerUrls.of(broker)
            tls_files = broker.tls_files
        layer_store = Path(args.layer_store or os.environ.get("DORMANT_LAYER_STORE") or state / "layers")
        provider: OidcProvider | None = None
        try:
            candidate = OidcProvider(state / "oidc")
            async with step("starting the identity provider"):
                await candidate.start()
            stack.push_async_callback(candidate.stop)
            provider = candidate
        except OidcProviderNotInstalled as exc:
            # Still a working mesh: the gateway signs its own dev tokens (`dormant token --role ...`).
            print(f"warning: {exc}; the gateway uses its own dev key instead", file=sys.stderr)
        except RuntimeError as exc:
            return fail(str(exc).splitlines()[0])
        rabbitmq_url = os.environ.get("DORMANT_RABBITMQ_URL")
        if args.rabbitmq:
            from dormant_local.rabbitmq import RabbitNode  # lazy: start-up time

            rabbit = RabbitNode(state / "rabbitmq")
            try:
                async with step("starting RabbitMQ"):
                    await rabbit.start()
            except RuntimeError as exc:
                return fail(str(exc).splitlines()[0])
            stack.push_async_callback(rabbit.stop)
            rabbitmq_url = rabbit.url
        nats_url = os.environ.get("DORMANT_NATS_URL")
        if args.nats:
            from dormant_local.nats import NatsNotInstalled, NatsServer  # lazy: start-up time

            nats = NatsServer(state / "nats")
            try:
                async with step("starting NATS (JetStream)"):
                    await nats.start()
            except (NatsNotInstalled, RuntimeError) as exc:
                return fail(str(exc).splitlines()[0])
            stack.push_async_callback(nats.stop)
            nats_url = nats.url
        vault_env: dict[str, str] = {}  # the secrets store's settings, per kind of process
        if args.secrets:
            vault = await _start_openbao(state, stack)
            if isinstance(vault, int):
                return vault
            vault_env = vault
        try:
            catalog = await open_catalog(catalog_url)
        except (CatalogError, OSError) as exc:
            return fail(f"cannot reach the catalog at {catalog_url}: {exc}")
        stack.push_async_callback(catalog.close)

        env = {
            **os.environ,
            "DORMANT_BROKER_URL": urls.runtime,
            "DORMANT_CATALOG_URL": catalog_url,
            "DORMANT_LAYER_STORE": str(layer_store),
        }
        # The gateway and the runtimes trust the provider's tokens (or, without it, the gateway's dev key),
        # and the developer's shell gets a token for the default developer user (README's commands).
        if provider is not None:
            env.update(provider.service_env())
            try:
                developer_token = await provider.token(DEV_USER, (DEV_ROLE,), minutes=DEV_TOKEN_MINUTES)
            except httpx.HTTPError as exc:
                return fail(f"the identity provider did not issue the developer token ({type(exc).__name__})")
        else:
            env.update(_dev_key_trust(state))
            developer_token = _dev_key_token(state)
        token_file = state / "dev-token"
        token_file.touch(mode=0o600)
        token_file.chmod(0o600)
        token_file.write_text(developer_token + "\n")
        stack.callback(token_file.unlink, missing_ok=True)
        if rabbitmq_url:
            env["DORMANT_RABBITMQ_URL"] = rabbitmq_url
        if nats_url:
            env["DORMANT_NATS_URL"] = nats_url
        # The pods start (and warm their runtimes) while the service builds. Pods hold the token that
        # may only mint per-function tokens; the gateway (and the developer's shell) the admin token.
        pod_env = {**env, **{k: v for k, v in vault_env.items() if k != "DORMANT_VAULT_TOKEN"}}
        # Each pod and the controller serve /metrics, /healthz and /readyz on a port of their own (the
        # gateway on its HTTP port); mesh.json records them ("observability").
        pod_ports = {f"dev-pod-{index + 1}": free_port() for index in range(args.pods)}
        # TypeScript services run on Node pods (base runtime dormant-node:1); a pod serves one deployment,
        # so each service gets as many as its replicas.
        node_pods = args.replicas * sum(1 for d in service_dirs if is_node_service(d))
        pod_ports.update({f"dev-node-pod-{index + 1}": free_port() for index in range(node_pods)})
        children = [
            await _start_pod(pod_env, state, index, args.lease, pod_ports[f"dev-pod-{index + 1}"])
            for index in range(args.pods)
        ]
        for index in range(node_pods):
            children.append(
                await _start_pod(
                    pod_env,
                    state,
                    index,
                    args.lease,
                    pod_ports[f"dev-node-pod-{index + 1}"],
                    base_image=NODE_BASE_RUNTIME,
                )
            )
        stack.push_async_callback(_stop_children, children)
        gateway_url = f"{'https' if tls_files else 'http'}://127.0.0.1:{free_port()}"
        # Only the gateway gets its own client's secret (client credentials, for the calls it makes itself).
        gateway_env = {**env, **provider.gateway_env()} if provider is not None else dict(env)
        gateway_env["DORMANT_BROKER_URL"] = urls.gateway
        gateway_env.update({k: v for k, v in vault_env.items() if k != "DORMANT_VAULT_SIDECAR_TOKEN"})
        children.append(await _start_gateway(gateway_env, state, gateway_url, tls_files))
        controller_log = (state / "controller.log").open("ab")
        stack.callback(controller_log.close)
        controller_port = free_port()
        children.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dormant_cli",
                "controller",
                "--metrics-port",
                str(controller_port),
                env={**env, "DORMANT_BROKER_URL": urls.controller},
                stdout=controller_log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
                start_new_session=True,
            )
        )

        served: list[DevService] = []
        for service_dir in service_dirs:
            one = DevService(service_dir, catalog=catalog, layer_store=layer_store, replicas=args.replicas)
            try:
                if not await _unless_stopped(one.start(), stop):
                    return 0
            except CodegenError as exc:
                for diagnostic in exc.diagnostics:
                    print(diagnostic, file=sys.stderr)
                return fail(f"{service_dir} does not build; fix it and run dormant dev again")
            except CatalogError as exc:
                return fail(str(exc))
            pods = node_pods if is_node_service(service_dir) else args.pods
            if one.replicas > pods:
                print(
                    f"warning: {one.service} has {one.replicas} replicas but only {pods} pods can serve it:"
                    f" restart with --{'replicas' if pods == node_pods and pods != args.pods else 'pods'}"
                    f" {one.replicas}",
                    file=sys.stderr,
                )
            served.append(one)
        dev = served[0]

        for one in served:
            async with step(f"waiting for {one.service} to answer"):
                serving = await _wait_serving(urls.gateway, one.service, stop)
            if not serving:
                if stop.is_set():
                    return 0
                return fail(f"{one.service} did not start serving within {SERVING_TIMEOUT_S:g}s")
        info: dict[str, Any] = {
            "brokerUrl": urls.developer,
            "catalogUrl": catalog_url,
            "layerStore": str(layer_store),
            "service": dev.service,
            "version": dev.version,
            "pods": args.pods,
            "replicas": dev.replicas,
            # Every service served (the first one is "service" above), with the base runtime it runs on.
            "services": [_served_info(one) for one in served],
            "gatewayUrl": gateway_url,
            "stateDir": str(state),
            "tokenFile": str(token_file),
            "observability": {  # each serves /metrics, /healthz and /readyz
                "gateway": gateway_url,
                "controller": f"http://127.0.0.1:{controller_port}",
                "pods": {pod: f"http://127.0.0.1:{port}" for pod, port in pod_ports.items()},
            },
        }
        if urls.admin != urls.developer:
            info["adminBrokerUrl"] = urls.admin  # `dormant status` reads mesh/stats as the admin
        if provider is not None:
            info["oidcIssuer"] = provider.issuer
        if tls_files is not None:
            info["caFile"] = str(tls_files.ca_cert)  # the broker's and the gateway's CA
        if rabbitmq_url:
            info["rabbitmqUrl"] = rabbitmq_url
        if nats_url:
            info["natsUrl"] = nats_url
        mesh_file = state / "mesh.json"
        _write_json(mesh_file, info)
        stack.callback(mesh_file.unlink, missing_ok=True)
        targets_file = state / "prometheus-targets.json"  # deploy/observability/prometheus-dev.yml reads it
        _write_json(targets_file, _scrape_targets(info["observability"]))
        stack.callback(targets_file.unlink, missing_ok=True)
        env_file = state / "env.sh"
        write_private(
            env_file,
            f"export DORMANT_BROKER_URL={urls.developer}\n"
            + urls.credential_exports()
            + f"export DORMANT_CATALOG_URL={catalog_url}\n"
            f"export DORMANT_LAYER_STORE={layer_store}\n"
            f"export DORMANT_GATEWAY_URL={gateway_url}\n"
            f"export DORMANT_STATE_DIR={state}\n"
            f"export DORMANT_TOKEN={developer_token}\n"
            + (f"export DORMANT_RABBITMQ_URL={rabbitmq_url}\n" if rabbitmq_url else "")
            + (f"export DORMANT_NATS_URL={nats_url}\n" if nats_url else "")
            + "".join(
                f"export {k}={v}\n" for k, v in vault_env.items() if k != "DORMANT_VAULT_SIDECAR_TOKEN"
            )
            # The URL names the CA already; tools that are not Dormant's (mosquitto_rr --cafile, curl
            # --cacert) find it here.
            + (f"export DORMANT_BROKER_CA_FILE={tls_files.ca_cert}\n" if tls_files else ""),
        )
        stack.callback(env_file.unlink, missing_ok=True)
        _print_banner(
            info,
            _example_call(service_dirs[0]),
            env_file,
            state / "controller.log",
            args.watch,
            also=[(one.service, _example_call(one.service_dir)) for one in served[1:]],
        )
        print("ready", flush=True)

        if args.watch:

            def recorder(one: DevService) -> Callable[[int], None]:
                def record(version: int) -> None:
                    info["services"] = [_served_info(s) for s in served]
                    if one is dev:
                        info.update(version=version, replicas=dev.replicas)
                    _write_json(mesh_file, info)

                return record

            await asyncio.gather(*(watch_changes(one, stop, recorder(one)) for one in served))
        else:
            await stop.wait()
        print("stopping ...", file=sys.stderr)
    return 0


async def _start_openbao(state: Path, stack: contextlib.AsyncExitStack) -> dict[str, str] | int:
    """A private OpenBao set up for functions' secrets: the settings each process needs (the admin
    token for the gateway and the developer, the sidecar token for pods), or ``fail``'s status."""
    from dormant_local.openbao import OpenBaoServer  # lazy: start-up time
    from dormant_secrets import SecretsError  # lazy: start-up time
    from dormant_secrets.openbao import OpenBaoAdmin  # lazy: start-up time

    from .dev_service import step  # lazy: start-up time

    bao = OpenBaoServer(state / "openbao")
    try:
        async with step("starting OpenBao (secrets)"):
            await bao.start()
    except RuntimeError as exc:
        return fail(str(exc).splitlines()[0])
    stack.push_async_callback(bao.stop)
    try:
        admin = OpenBaoAdmin(bao.addr, bao.root_token)
        try:
            await asyncio.to_thread(admin.setup)
            sidecar_token = await asyncio.to_thread(admin.create_sidecar_token)
        finally:
            admin.close()
    except SecretsError as exc:
        return fail(f"OpenBao did not set up: {exc}")
    return {
        "DORMANT_VAULT_ADDR": bao.addr,
        "DORMANT_VAULT_TOKEN": bao.root_token,
        "DORMANT_VAULT_SIDECAR_TOKEN": sidecar_token,
    }


async def _unless_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` unless Ctrl-C comes first (then cancel it); whether it ran to the end."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()  # its exception, if any
    return True


def _dev_key_trust(state: Path) -> dict[str, str]:
    """Without the identity provider: runtimes trust the gateway's dev key (its key set, inline)."""
    from dormant_gateway.auth import load_or_create_dev_key  # lazy: start-up time
    from dormant_gateway.config import DEFAULT_AUDIENCE, DEV_ISSUER  # lazy: start-up time

    return {
        "DORMANT_OIDC_ISSUER": DEV_ISSUER,
        "DORMANT_OIDC_AUDIENCE": DEFAULT_AUDIENCE,
        "DORMANT_OIDC_JWKS": json.dumps(load_or_create_dev_key(state).jwks()),
    }


def _dev_key_token(state: Path) -> str:
    from dormant_gateway.auth import Role, load_or_create_dev_key, mint_token  # lazy: start-up time
    from dormant_gateway.config import DEFAULT_AUDIENCE, DEV_ISSUER  # lazy: start-up time

    return mint_token(
        load_or_create_dev_key(state),
        sub=DEV_USER,
        roles=[Role(DEV_ROLE)],
        ttl_s=DEV_TOKEN_MINUTES * 60,
        issuer=DEV_ISSUER,
        audience=DEFAULT_AUDIENCE,
    )


def _scrape_targets(endpoints: dict[str, Any]) -> list[dict[str, Any]]:
    """Prometheus file-based discovery targets for the mesh's /metrics endpoints."""

    def target(url: str, **labels: str) -> dict[str, Any]:
        scheme, _, address = url.partition("://")
        return {"targets": [address], "labels": {"__scheme__": scheme, **labels}}

    return [
        target(endpoints["gateway"], component="gateway"),
        target(endpoints["controller"], component="controller"),
        *(target(url, component="pod", pod=pod) for pod, url in endpoints["pods"].items()),
    ]


def _write_json(path: Path, value: Any) -> None:
    """Written 0600 (it holds the developer's and the admin's broker passwords), then moved in place."""
    tmp = path.with_name(f".{path.name}.tmp")
    write_private(tmp, json.dumps(value, indent=2) + "\n")
    os.replace(tmp, path)


def _served_info(one: DevService) -> dict[str, Any]:
    from dormant_codegen.node import NODE_BASE_RUNTIME, is_node_service  # lazy: start-up time

    return {
        "service": one.service,
        "version": one.version,
        "replicas": one.replicas,
        "dir": str(one.service_dir),
        "baseRuntime": NODE_BASE_RUNTIME if is_node_service(one.service_dir) else "dormant-python:1",
    }


async def _start_pod(
    env: dict[str, str],
    state: Path,
    index: int,
    lease: float,
    metrics_port: int | None = None,
    *,
    base_image: str | None = None,
) -> asyncio.subprocess.Process:
    """A pooled pod; with ``base_image`` (``dormant-node:1``) a pod of that base runtime only."""
    metrics = [] if metrics_port is None else ["--metrics-port", str(metrics_port)]
    kind = "" if base_image is None else "node-"
    image = [] if base_image is None else ["--base-image", base_image]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dormant_sidecar",
        "--pod-id",
        f"dev-{kind}pod-{index + 1}",
        "--work-dir",
        str(state / "pods" / f"{kind}pod-{index + 1}"),
        "--lease",
        str(lease),
        *image,
        *metrics,
        env=env,
        preexec_fn=_die_with_parent,
        start_new_session=True,
    )


async def _start_gateway(
    env: dict[str, str], state: Path, gateway_url: str, tls_files: TlsFiles | None
) -> asyncio.subprocess.Process:
    # With --tls the gateway serves HTTPS with the broker's certificate (the same host, the same CA).
    tls_args = []
    if tls_files is not None:
        tls_args = ["--tls-cert", str(tls_files.server_cert), "--tls-key", str(tls_files.server_key)]
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dormant_gateway",
        "--port",
        gateway_url.rsplit(":", 1)[1],
        "--state-dir",
        str(state),
        "--replica-id",
        "dev-gateway",
        *tls_args,
        env={**env, "DORMANT_STATE_DIR": str(state)},
        preexec_fn=_die_with_parent,
        start_new_session=True,
    )


async def _wait_serving(broker_url: str, service: str, stop: asyncio.Event) -> bool:
    """Ping the live topic until a runtime answers (an unknown function gets NotFound)."""
    from dormant.client import Client  # lazy: start-up time

    deadline = asyncio.get_running_loop().time() + SERVING_TIMEOUT_S
    async with Client(broker_url) as client:
        while not stop.is_set() and asyncio.get_running_loop().time() < deadline:
            try:
                await client.call(service, "dormantReadinessProbe", {}, timeout=0.5)  # no such function
            except (NotFound, Unauthenticated) as exc:
                # A runtime's answer, not the client's own verdict on a call nobody received.
                if not (isinstance(exc.details, dict) and exc.details.get("noSubscribers")):
                    return True
                await asyncio.sleep(0.1)
            except DormantError:
                await asyncio.sleep(0.1)
    return False


async def _stop_children(children: list[asyncio.subprocess.Process], grace: float = 20.0) -> None:
    for child in children:
        if child.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            await asyncio.wait_for(child.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await child.wait()


def sample_input(schema: Any) -> Any:
    """A small valid-looking input for ``schema`` (the banner's example call): required properties
    only, strings as a name (an email for ``format: email``), numbers 1, booleans true."""
    if not isinstance(schema, dict):
        return {}
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        return {
            name: sample_input(properties.get(name, {}))
            for name in schema.get("required") or []
            if isinstance(name, str)
        }
    if kind == "string":
        return "ann@example.com" if schema.get("format") == "email" else "Ann"
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    return {}


def _example_call(service_dir: Path) -> tuple[str, str]:
    """A function to show in the banner and an input for it, from the service's interface."""
    interface = json.loads((service_dir / "generated" / "interface.json").read_text())
    functions: dict[str, Any] = interface.get("functions", {})
    if not functions:
        return "someFunction", "{}"
    # The first function that creates something, else the first by name: a call that works on its own.
    name = next((f for f in sorted(functions) if f.startswith("create")), min(functions))
    return name, json.dumps(sample_input(functions[name].get("input")))


def _print_banner(
    info: dict[str, Any],
    example: tuple[str, str],
    env_file: Path,
    controller_log: Path,
    watching: bool,
    also: list[tuple[str, tuple[str, str]]] | None = None,
) -> None:
    service, version = info["service"], info["version"]
    broker = parse_broker_url(str(info["brokerUrl"]), environ={})
    function, params = example
    watch = (
        "Watching: a saved change to a *.py module or schemas/*.json is rebuilt, published and deployed.\n"
        if watching
        else ""
    )
    if broker.username is not None:
        # The password stays in env.sh and mesh.json (both 0600): never on a terminal or in a log.
        login = '-u "$DORMANT_BROKER_USER" -P "$DORMANT_BROKER_PASSWORD" '
        inbox = f"reply/{broker.username}/rr"
        access = f"you are {broker.username!r}, password in {env_file}"
    else:
        login, inbox, access = "", "reply/me", "open: no accounts"
    if broker.tls:
        login = '--cafile "$DORMANT_BROKER_CA_FILE" ' + login
        access += ", TLS"
    more = "".join(f"  dormant call {name}.{fn} '{sample}'\n" for name, (fn, sample) in also or [])
    served = "".join(
        f"  service  {s['service']} v{s['version']} ({s['baseRuntime']})\n"
        for s in info.get("services", [])[1:]
    )
    print(
        f"""
Dormant dev mesh
  broker   {redact_url(str(info["brokerUrl"]))}  ({access})
  catalog  {info["catalogUrl"]}
  gateway  {info["gatewayUrl"]}  (token: dormant token --role developer)
  service  {service} v{version} on {info["replicas"]} of {info["pods"]} pooled pod(s)
{served}  metrics  {info["observability"]["controller"]}/metrics (per function), {info["gatewayUrl"]}/metrics;
           /healthz and /readyz there too; the pods' are in {info["stateDir"]}/mesh.json

Call it (in another shell, from this directory, or anywhere after `source {env_file}`):
  dormant call {service}.{function} '{params}'
  source {env_file} && mosquitto_rr -V 5 -p {broker.port} {login}-t service/{service}/{function} \\
      -e {inbox} -D publish user-property authorization "Bearer $DORMANT_TOKEN" -m '{params}'
{more}{watch}Roll out a new version (the controller runs; its log: {controller_log}):
  dormant publish DIR  (prints the new version N), then dormant approve {service} N
  dormant deploy {service} --version N --strategy canary --steps 10,50,100 --interval 30s
  dormant status {service}, dormant rollback {service}
Ctrl-C stops the mesh.
""",
        file=sys.stderr,
        flush=True,
    )
