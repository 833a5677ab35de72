"""``dormant dev``: the whole mesh on one machine, in one command.

Starts a local Postgres (unless a catalog URL is given) and a private Mosquitto with Dormant's broker
config (unless a broker URL is given), uses a local OCI layout as the layer store, publishes and
deploys the service in DIR (default: the example), starts ``--pods`` pooled pods, a gateway and the
rollout controller (so ``dormant deploy --strategy ...`` rollouts run), waits until the service
answers, prints how to call it and the line ``ready``. Ctrl-C stops every child.
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
from pathlib import Path

from dormant.errors import DormantError, NotFound

from .build_cmds import publish
from .common import add_settings_flags, fail
from .deploy_cmd import deploy

PR_SET_PDEATHSIG = 1
SERVING_TIMEOUT_S = 90.0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dev", help="run the local mesh (Postgres, Mosquitto, pods) serving the service in DIR"
    )
    p.add_argument("dir", nargs="?", type=Path, default=None, help="service directory (default: the example)")
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
    p.add_argument("--state-dir", type=Path, default=Path(".dormant/dev"), help="data of the local mesh")
    p.add_argument("--lease", type=float, default=5.0, help="slot lease length in seconds")
    add_settings_flags(p, broker=True, catalog=True, layers=True)
    p.set_defaults(run=run_dev)


def default_service_dir() -> Path | None:
    """``examples/user-service`` from the current directory or the source checkout."""
    candidates = [
        Path.cwd() / "examples" / "user-service",
        Path(__file__).resolve().parents[4] / "examples" / "user-service",
    ]
    return next((c for c in candidates if (c / "schemas").is_dir()), None)


def run_dev(args: argparse.Namespace) -> int:
    service_dir = args.dir or default_service_dir()
    if service_dir is None or not service_dir.is_dir():
        return fail("no service directory: pass one, e.g. `dormant dev examples/user-service`")
    if args.pods < 1:
        return fail("--pods must be at least 1")
    if args.replicas < 1:
        return fail("--replicas must be at least 1")
    try:
        return asyncio.run(_dev(args, service_dir.resolve()))
    except KeyboardInterrupt:
        return 0


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the ``dormant dev`` process dies, whatever kills it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _dev(args: argparse.Namespace, service_dir: Path) -> int:
    from dormant_local.broker import MosquittoNotInstalled, MosquittoProcess  # lazy: start-up time

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

            print("starting local Postgres ...", file=sys.stderr)
            pg = LocalPostgres(data_dir=state / "postgres")
            await pg.start()
            stack.push_async_callback(pg.stop)
            catalog_url = await pg.create_database("dormant")
        broker_url = args.broker_url or os.environ.get("DORMANT_BROKER_URL")
        if not broker_url:
            try:
                broker = MosquittoProcess(
                    port=args.broker_port, data_dir=state / "mosquitto", log_file=state / "mosquitto.log"
                )
            except MosquittoNotInstalled as exc:
                return fail(str(exc))
            await broker.start()
            stack.push_async_callback(broker.stop)
            broker_url = broker.url
        layer_store = Path(args.layer_store or os.environ.get("DORMANT_LAYER_STORE") or state / "layers")

        env = {
            **os.environ,
            "DORMANT_BROKER_URL": broker_url,
            "DORMANT_CATALOG_URL": catalog_url,
            "DORMANT_LAYER_STORE": str(layer_store),
        }
        pods: list[asyncio.subprocess.Process] = []
        for index in range(args.pods):
            pod = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "dormant_sidecar",
                "--pod-id",
                f"dev-pod-{index + 1}",
                "--work-dir",
                str(state / "pods" / f"pod-{index + 1}"),
                "--lease",
                str(args.lease),
                env=env,
                preexec_fn=_die_with_parent,
            )
            pods.append(pod)
        from dormant_local import free_port  # lazy: start-up time

        gateway_url = f"http://127.0.0.1:{free_port()}"
        gateway = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dormant_gateway",
            "--port",
            gateway_url.rsplit(":", 1)[1],
            "--state-dir",
            str(state),
            "--replica-id",
            "dev-gateway",
            env={**env, "DORMANT_STATE_DIR": str(state)},
            preexec_fn=_die_with_parent,
        )
        pods.append(gateway)
        controller_log = (state / "controller.log").open("ab")
        stack.callback(controller_log.close)
        controller = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "dormant_cli",
            "controller",
            env=env,
            stdout=controller_log,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        pods.append(controller)
        stack.push_async_callback(_stop_children, pods)

        service, version = await publish(service_dir, catalog_url, layer_store, actor="dev")
        print(f"published {service} v{version}", file=sys.stderr)
        print(await deploy(catalog_url, service, version, args.replicas, SERVING_TIMEOUT_S), file=sys.stderr)

        if not await _wait_serving(broker_url, service, stop):
            return fail(f"{service} did not start serving within {SERVING_TIMEOUT_S:g}s")
        info = {
            "brokerUrl": broker_url,
            "catalogUrl": catalog_url,
            "layerStore": str(layer_store),
            "service": service,
            "version": version,
            "pods": args.pods,
            "replicas": args.replicas,
            "gatewayUrl": gateway_url,
        }
        (state / "mesh.json").write_text(json.dumps(info, indent=2) + "\n")
        stack.callback((state / "mesh.json").unlink, missing_ok=True)
        (state / "env.sh").write_text(
            f"export DORMANT_BROKER_URL={broker_url}\n"
            f"export DORMANT_CATALOG_URL={catalog_url}\n"
            f"export DORMANT_LAYER_STORE={layer_store}\n"
            f"export DORMANT_GATEWAY_URL={gateway_url}\n"
            f"export DORMANT_STATE_DIR={state}\n"
        )
        stack.callback((state / "env.sh").unlink, missing_ok=True)
        _print_banner(
            broker_url,
            catalog_url,
            service,
            version,
            args.replicas,
            args.pods,
            _example_call(service_dir, service),
            state / "env.sh",
            gateway_url,
            state / "controller.log",
        )
        print("ready", flush=True)
        await stop.wait()
        print("stopping ...", file=sys.stderr)
    return 0


async def _wait_serving(broker_url: str, service: str, stop: asyncio.Event) -> bool:
    """Ping the live topic until a runtime answers (an unknown function gets NotFound)."""
    from dormant.client import Client  # lazy: start-up time

    deadline = asyncio.get_running_loop().time() + SERVING_TIMEOUT_S
    async with Client(broker_url) as client:
        while not stop.is_set() and asyncio.get_running_loop().time() < deadline:
            try:
                await client.call(service, "__ping", {}, timeout=0.5)
            except NotFound as exc:
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


def _example_call(service_dir: Path, service: str) -> tuple[str, str]:
    """A function to show in the banner and an input for it (the example's, or ``{}``)."""
    interface = json.loads((service_dir / "generated" / "interface.json").read_text())
    functions = sorted(interface.get("functions", {}))
    if "createUser" in functions:
        return "createUser", '{"email": "ann@example.com", "name": "Ann"}'
    return (functions[0] if functions else "someFunction"), "{}"


def _print_banner(
    broker_url: str,
    catalog_url: str,
    service: str,
    version: int,
    replicas: int,
    pods: int,
    example: tuple[str, str],
    env_file: Path,
    gateway_url: str,
    controller_log: Path,
) -> None:
    port = broker_url.rsplit(":", 1)[-1]
    function, params = example
    print(
        f"""
Dormant dev mesh
  broker   {broker_url}
  catalog  {catalog_url}
  gateway  {gateway_url}  (token: dormant token --role developer)
  service  {service} v{version} on {replicas} of {pods} pooled pod(s)

Call it (in another shell):
  source {env_file}
  dormant call {service}.{function} '{params}'
  mosquitto_rr -V 5 -p {port} -t service/{service}/{function} -e reply/me -m '{params}'
Roll out a new version (the controller runs; its log: {controller_log}):
  dormant publish DIR  (prints the new version N), then dormant approve {service} N
  dormant deploy {service} --version N --strategy canary --steps 10,50,100 --interval 30s
  dormant status {service}, dormant rollback {service}
Ctrl-C stops the mesh.
""",
        file=sys.stderr,
        flush=True,
    )
