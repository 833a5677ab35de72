"""A real mesh for end-to-end tests: pods as subprocesses, the session broker, a fresh catalog."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dormant import Client, NotFound, wire
from dormant.errors import DormantError, Unauthenticated
from dormant.transport import Message, connect_transport
from dormant_cli.build_cmds import publish
from dormant_cli.deploy_cmd import deploy

from .identity import DevIdentity

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = [
    ROOT / p for p in ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")
]
EXAMPLE = ROOT / "examples" / "user-service"
PROBE = ROOT / "tests" / "fixtures" / "services" / "probe-service"
LEASE_S = 1.0


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: source roots importable, Dormant settings added."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, SOURCE_ROOTS), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.update(extra)
    return env


def copy_service(source: Path, dest: Path) -> Path:
    """A private copy of a service directory (without generated output), to edit in a test."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("generated", "__pycache__"))
    return dest


@dataclass
class Mesh:
    broker_url: str
    catalog_url: str
    layer_store: Path | str
    """A directory, or a registry (``oci+http://…``, ``tests/e2e/test_registry_layers.py``)."""
    work_root: Path
    pods: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    identity: DevIdentity = field(init=False)
    """Tokens the pods' runtimes verify (the dev key in ``work_root``'s sibling ``state``, which a
    gateway started with that state directory also signs with)."""

    def __post_init__(self) -> None:
        self.identity = DevIdentity(self.work_root.parent / "state")
        self._published: set[str] = set()

    async def publish(self, service_dir: Path, *, import_check: bool = True) -> tuple[str, int]:
        service, version = await publish(
            service_dir, self.catalog_url, self.layer_store, actor="test", import_check=import_check
        )
        if service not in self._published and not any(name.startswith("controller") for name in self.pods):
            # The broker is shared by the session's tests: a route table another test's controller left
            # retained for this service would send this test's calls to versions of another catalog.
            await clear_retained(self.broker_url, [service])
        self._published.add(service)
        return service, version

    async def deploy(self, service: str, version: int, replicas: int = 1) -> None:
        await deploy(self.catalog_url, service, version, replicas)

    def start_pod(
        self,
        pod_id: str,
        lease_s: float = LEASE_S,
        *,
        extra_args: Sequence[str] = (),
        extra_env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        log = (self.work_root / f"{pod_id}.log").open("ab")
        pod = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dormant_sidecar",
                "--pod-id",
                pod_id,
                "--work-dir",
                str(self.work_root / pod_id),
                "--lease",
                str(lease_s),
                *extra_args,
            ],
            env=child_env(
                DORMANT_BROKER_URL=self.broker_url,
                DORMANT_CATALOG_URL=self.catalog_url,
                DORMANT_LAYER_STORE=str(self.layer_store),
                **{**self.identity.trust_env(), **(extra_env or {})},
            ),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.pods[pod_id] = pod
        return pod

    def pod_log(self, pod_id: str) -> str:
        return (self.work_root / f"{pod_id}.log").read_text(errors="replace")

    def start_controller(self, name: str = "controller") -> subprocess.Popen[bytes]:
        """``dormant controller`` (route tables, service states, rollouts) as a child of the mesh."""
        log = (self.work_root / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "dormant_cli", "controller"],
            env=child_env(DORMANT_BROKER_URL=self.broker_url, DORMANT_CATALOG_URL=self.catalog_url),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.pods[name] = process
        return process

    async def wait_serving(self, service: str, *, version: int | None = None, timeout: float = 90.0) -> None:
        """Until a runtime answers on the (version) topic: it answers an unknown function with NotFound
        (a NotFound the client says because nobody received the call does not count)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        async with Client(self.broker_url) as client:
            while loop.time() < end:
                try:
                    await client.call(service, "dormantReadinessProbe", {}, timeout=0.5, version=version)
                except (NotFound, Unauthenticated) as exc:
                    if not (isinstance(exc.details, dict) and exc.details.get("noSubscribers")):
                        return
                    await asyncio.sleep(0.05)
                except DormantError:
                    await asyncio.sleep(0.05)
        logs = "\n".join(f"--- {p}\n{self.pod_log(p)[-3000:]}" for p in self.pods)
        raise AssertionError(f"{service} v{version} not serving after {timeout}s\n{logs}")

    def stop(self) -> None:
        for pod in self.pods.values():
            if pod.poll() is None:
                pod.send_signal(signal.SIGTERM)
        for pod in self.pods.values():
            try:
                pod.wait(15)
            except subprocess.TimeoutExpired:
                pod.kill()
                pod.wait()


async def clear_retained(broker_url: str, services: Sequence[str]) -> None:
    """Remove what a controller left retained on a shared broker (route tables, service states and
    the marker that says states are published), so no later test sees it."""
    transport = await connect_transport(broker_url)
    try:
        topics = [wire.service_state_topic()]
        for service in services:
            topics += [wire.routes_topic(service), wire.service_state_topic(service)]
        for topic in topics:
            await transport.publish(Message(topic, b"", qos=1, retain=True))
    finally:
        await transport.close()


async def call_many(
    broker_url: str, service: str, function: str, inputs: Sequence[Any], **kwargs: Any
) -> list[Any]:
    async with Client(broker_url) as client:
        return [await client.call(service, function, params, **kwargs) for params in inputs]


@contextlib.contextmanager
def caller_token(token: str) -> Any:
    """``DORMANT_TOKEN`` set for the duration: every ``Client`` made meanwhile sends it."""
    before = os.environ.get("DORMANT_TOKEN")
    os.environ["DORMANT_TOKEN"] = token
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("DORMANT_TOKEN", None)
        else:
            os.environ["DORMANT_TOKEN"] = before


@contextlib.contextmanager
def running_mesh(broker_url: str, catalog_url: str, tmp: Path) -> Any:
    mesh = Mesh(broker_url, catalog_url, tmp / "layers", tmp / "pods")
    mesh.work_root.mkdir(parents=True, exist_ok=True)
    try:
        with caller_token(mesh.identity.token("tester")):
            yield mesh
    finally:
        mesh.stop()
