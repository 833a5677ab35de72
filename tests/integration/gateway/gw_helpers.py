"""Helpers for gateway tests: a gateway as a real process (uvicorn), dev tokens, HTTP waits."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import httpx

from dormant_gateway.auth import Role, load_or_create_dev_key, mint_token
from dormant_gateway.config import DEFAULT_AUDIENCE, DEV_ISSUER
from dormant_local import free_port


class MeshUrls(Protocol):
    """What a gateway needs of a test mesh (``e2e.mesh.Mesh``)."""

    broker_url: str
    catalog_url: str
    layer_store: Path


ROOT = Path(__file__).resolve().parents[3]
SOURCE_ROOTS = [
    ROOT / p for p in ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")
]
EXAMPLE = ROOT / "examples" / "user-service"
PROBE = ROOT / "tests" / "fixtures" / "services" / "probe-service"


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, SOURCE_ROOTS), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env.update(extra)
    return env


@dataclass
class GatewayProcess:
    """``python -m dormant_gateway`` on a free port; ``url`` once ``start`` returns."""

    broker_url: str
    catalog_url: str
    layer_store: Path
    state_dir: Path
    log_file: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    replica_id: str = "gw-test"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> subprocess.Popen[bytes]:
        env = child_env(
            DORMANT_BROKER_URL=self.broker_url,
            DORMANT_CATALOG_URL=self.catalog_url,
            DORMANT_LAYER_STORE=str(self.layer_store),
            DORMANT_STATE_DIR=str(self.state_dir),
            **self.extra_env,
        )
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dormant_gateway",
                "--port",
                str(self.port),
                "--replica-id",
                self.replica_id,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self.proc

    async def start(self, timeout: float = 90.0) -> None:  # minutes-long starts seen on a loaded machine
        proc = self.spawn()
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        async with httpx.AsyncClient() as http:
            while loop.time() < end:
                if proc.poll() is not None:
                    raise AssertionError(f"gateway exited:\n{self.log()}")
                try:
                    if (await http.get(f"{self.url}/health")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"gateway not up after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-5000:] if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def token(self, *roles: str, sub: str = "tester", ttl_s: float = 3600) -> str:
        key = load_or_create_dev_key(self.state_dir)
        return mint_token(
            key,
            sub=sub,
            roles=[Role(r) for r in roles],
            ttl_s=ttl_s,
            issuer=DEV_ISSUER,
            audience=DEFAULT_AUDIENCE,
        )

    def headers(self, *roles: str, sub: str = "tester") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*roles, sub=sub)}"}


async def wait_for(predicate_coro: object, *, timeout: float, interval: float = 0.1) -> None:
    """Await ``predicate_coro()`` until it is truthy or ``timeout`` s pass (then AssertionError)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        if await predicate_coro():  # type: ignore[operator]
            return
        if loop.time() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def new_gateway(mesh: MeshUrls, tmp: Path, name: str, **env: str) -> GatewayProcess:
    """A gateway process on ``mesh`` (not started), with rate limits out of the way of tests."""
    return GatewayProcess(
        broker_url=mesh.broker_url,
        catalog_url=mesh.catalog_url,
        layer_store=mesh.layer_store,
        state_dir=tmp / "state",
        log_file=tmp / f"{name}.log",
        replica_id=name,
        extra_env={
            "DORMANT_RATE_MANAGE_PER_MIN": "100000",
            "DORMANT_RATE_DEPLOY_PER_MIN": "100000",
            "DORMANT_ASYNC_BACKOFF_S": "0.05",
            **env,
        },
    )
