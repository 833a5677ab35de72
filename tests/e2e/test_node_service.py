"""A TypeScript service on the dev mesh beside the Python example: ``dormant dev examples/user-service
examples/greeter-node`` builds the Node example with tsc, publishes it (base runtime ``dormant-node:1``),
starts a Node pod for it and deploys it; ``dormant call`` and ``mosquitto_rr`` (the README's form, with the
developer's credentials and token) reach both services.

Needs ``node`` and the built Node runtime (``runtimes/node``: ``npm ci && npm run build``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .dev_mesh import DevMesh, dormant, running_dev

ROOT = Path(__file__).resolve().parents[2]
NODE_EXAMPLE = ROOT / "examples" / "greeter-node"
PY_EXAMPLE = ROOT / "examples" / "user-service"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevMesh]:
    if not (ROOT / "runtimes" / "node" / "dist" / "main.js").is_file():
        pytest.fail("the Node runtime is not built: cd runtimes/node && npm ci && npm run build")
    tmp = tmp_path_factory.mktemp("node-dev")
    # A copy: the build writes the example's dist/ and generated/, not the checkout's.
    node_dir = tmp / "greeter-node"
    shutil.copytree(NODE_EXAMPLE, node_dir, ignore=shutil.ignore_patterns("dist", "node_modules", ".*"))
    with running_dev(tmp, str(PY_EXAMPLE), str(node_dir)) as mesh:
        yield mesh


def test_the_mesh_serves_both_runtimes(dev: DevMesh) -> None:
    mesh = json.loads((dev.state / "mesh.json").read_text())
    services = {s["service"]: s for s in mesh["services"]}
    assert services["user-service"]["baseRuntime"] == "dormant-python:1"
    assert services["greeter-node"]["baseRuntime"] == "dormant-node:1"
    assert services["greeter-node"]["version"] == 1
    assert "dev-node-pod-1" in mesh["observability"]["pods"]
    assert "dormant call greeter-node.greet" in dev.output


def test_dormant_call_reaches_the_node_service(dev: DevMesh) -> None:
    done = dormant(dev, "call", "greeter-node.greet", '{"name": "Ann"}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"text": "Hello, Ann!"}
    refused = dormant(dev, "call", "greeter-node.greet", '{"name": ""}')
    assert refused.returncode != 0
    assert "ValidationError" in refused.stderr and "name" in refused.stderr
    # The Python example beside it.
    user = '{"email": "node-e2e@example.com", "name": "Ann"}'
    created = dormant(dev, "call", "user-service.createUser", user)
    assert created.returncode == 0, created.stderr
    assert "userId" in json.loads(created.stdout)


def test_mosquitto_rr_reaches_the_node_service(dev: DevMesh) -> None:
    found = shutil.which("mosquitto_rr")
    assert found is not None, "mosquitto_rr is missing: deploy/bootstrap.sh installs mosquitto-clients"
    login = ["-u", dev.user, "-P", dev.password]
    call = [found, "-V", "5", "-h", dev.host, "-p", str(dev.callers_port), *login, "-W", "20"]
    call += ["-t", "service/greeter-node/greet", "-e", f"reply/{dev.user}/rr", "-m", '{"name": "Bob"}']
    token = ["-D", "publish", "user-property", "authorization", f"Bearer {dev.env_sh['DORMANT_TOKEN']}"]
    done = subprocess.run([*call, *token], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"text": "Hello, Bob!"}
    # Without the token the Node runtime refuses the call (the service needs authentication).
    refused = subprocess.run(call, capture_output=True, text=True, timeout=60, check=False)
    assert "Unauthenticated" in refused.stdout + refused.stderr
