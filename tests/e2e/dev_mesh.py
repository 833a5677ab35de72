"""A ``dormant dev`` of a test's own, as a developer's shell sees it: ``running_dev`` starts one on a
state directory of its own until it prints ``ready``; ``DevMesh`` holds what it wrote (``mesh.json``,
what ``source env.sh`` exports, its log) and ``dormant`` runs the CLI as that shell would."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dormant.config import parse_broker_url

from .mesh import child_env


@dataclass(frozen=True)
class DevMesh:
    state: Path
    output: str
    env_sh: dict[str, str]
    """What ``source STATE/env.sh`` exports."""
    mesh: dict[str, str]

    @property
    def host(self) -> str:
        return parse_broker_url(self.mesh["brokerUrl"], environ={}).host

    @property
    def callers_port(self) -> int:
        return parse_broker_url(self.mesh["brokerUrl"], environ={}).port

    @property
    def components_port(self) -> int:
        return parse_broker_url(self.mesh["adminBrokerUrl"], environ={}).port

    @property
    def user(self) -> str:
        return self.env_sh["DORMANT_BROKER_USER"]

    @property
    def password(self) -> str:
        return self.env_sh["DORMANT_BROKER_PASSWORD"]

    def cli_env(self) -> dict[str, str]:
        """A shell that sourced ``env.sh`` (not the checkout's own ``.dormant/dev``)."""
        return child_env(**self.env_sh)


def _sourced(env_file: Path) -> dict[str, str]:
    names = [
        line.split("=", 1)[0].removeprefix("export ")
        for line in env_file.read_text().splitlines()
        if line.startswith("export ")
    ]
    script = f"source {env_file} && " + " && ".join(f'printf "%s\\0" "${name}"' for name in names)
    done = subprocess.run(["bash", "-c", script], capture_output=True, check=True, timeout=10)
    return dict(zip(names, done.stdout.decode().split("\0")[:-1], strict=True))


@contextlib.contextmanager
def running_dev(tmp: Path, *extra: str) -> Iterator[DevMesh]:
    """``dormant dev --pods 2 [extra]`` on a state directory in ``tmp``, until ``ready``; SIGINT after."""
    state = tmp / "state"
    env = child_env()
    for key in list(env):
        if key.startswith("DORMANT_") and key != "DORMANT_MOSQUITTO":
            env.pop(key)
    log = tmp / "dev.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "dormant_cli", "dev", "--pods", "2", "--state-dir", str(state), *extra],
        env=env,
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip() == "ready", log.read_text()[-4000:]
        yield DevMesh(
            state=state,
            output=log.read_text(),
            env_sh=_sourced(state / "env.sh"),
            mesh=json.loads((state / "mesh.json").read_text()),
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def dormant(mesh: DevMesh, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dormant_cli", *args],
        capture_output=True,
        text=True,
        env=env or mesh.cli_env(),
        timeout=60,
        cwd=mesh.state,
        check=False,
    )


def run_rr(dev: DevMesh, *options: str, service: str = "user-service") -> subprocess.CompletedProcess[str]:
    """``mosquitto_rr`` calling ``service``.createUser on the callers' listener as the README shows,
    with ``options`` (a login, TLS files) added."""
    found = shutil.which("mosquitto_rr")
    assert found is not None, "mosquitto_rr is missing: deploy/bootstrap.sh installs mosquitto-clients"
    email = f"rr-{uuid.uuid4().hex[:8]}@example.com"
    command = [found, "-V", "5", "-h", dev.host, "-p", str(dev.callers_port), *options, "-W", "10"]
    command += ["-t", f"service/{service}/createUser", "-e", f"reply/{dev.user}/rr"]
    command += ["-D", "publish", "user-property", "authorization", f"Bearer {dev.env_sh['DORMANT_TOKEN']}"]
    command += ["-m", json.dumps({"email": email, "name": "Rr"})]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
