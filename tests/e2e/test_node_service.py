"""A TypeScript service on the dev mesh beside the Python example: ``dormant dev examples/user-service
examples/greeter-node`` builds the Node example with tsc, publishes it (base runtime ``dormant-node:1``),
starts a Node pod for it and deploys it; ``dormant call`` and ``mosquitto_rr`` (the README's form, with the
developer's credentials and token) reach both services. A second mesh, ``dormant dev examples/user-service
examples/user-service-node``, serves the Node version of the example service beside the Python one: its
createUser and getUser work through both, on the DataStore the Python runtime prepared.

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
NODE_USERS = ROOT / "examples" / "user-service-node"
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


@pytest.fixture(scope="module")
def users_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevMesh]:
    """The issue's mesh: the example service in Python and in TypeScript (a Node pod serves one service, so
    this is a mesh of its own rather than a third directory on the greeter's)."""
    if not (ROOT / "runtimes" / "node" / "dist" / "main.js").is_file():
        pytest.fail("the Node runtime is not built: cd runtimes/node && npm ci && npm run build")
    tmp = tmp_path_factory.mktemp("node-users-dev")
    users_dir = tmp / "user-service-node"
    shutil.copytree(NODE_USERS, users_dir, ignore=shutil.ignore_patterns("dist", "node_modules", ".*"))
    with running_dev(tmp, str(PY_EXAMPLE), str(users_dir)) as mesh:
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


# The mesh's start and stop land in these tests' time: more than the default 120 s on a busy machine.
@pytest.mark.timeout(300)
def test_the_users_mesh_serves_both_versions_of_the_example(users_dev: DevMesh) -> None:
    mesh = json.loads((users_dev.state / "mesh.json").read_text())
    services = {s["service"]: s for s in mesh["services"]}
    assert services["user-service-node"]["baseRuntime"] == "dormant-node:1"
    assert services["user-service"]["baseRuntime"] == "dormant-python:1"


def test_dormant_call_creates_and_finds_users_on_node(users_dev: DevMesh) -> None:
    user = '{"email": "Node-E2E@example.com", "name": "Nadia"}'
    created = dormant(users_dev, "call", "user-service-node.createUser", user)
    assert created.returncode == 0, created.stderr
    user_id = json.loads(created.stdout)["userId"]
    found = dormant(users_dev, "call", "user-service-node.getUser", json.dumps({"userId": user_id}))
    assert found.returncode == 0, found.stderr
    record = json.loads(found.stdout)
    assert record["userId"] == user_id and record["name"] == "Nadia"
    assert record["email"] == "node-e2e@example.com"
    again = dormant(users_dev, "call", "user-service-node.createUser", user)
    assert again.returncode != 0 and "BusinessLogicError" in again.stderr
    missing = dormant(users_dev, "call", "user-service-node.getUser", '{"userId": "no-such-user"}')
    assert missing.returncode != 0 and "NotFound" in missing.stderr
    # The Python version beside it keeps its own users: the same email is new there.
    python = dormant(users_dev, "call", "user-service.createUser", user)
    assert python.returncode == 0, python.stderr


@pytest.mark.timeout(300)
def test_mosquitto_rr_creates_and_finds_users_on_node(users_dev: DevMesh) -> None:
    dev = users_dev
    found_rr = shutil.which("mosquitto_rr")
    assert found_rr is not None, "mosquitto_rr is missing: deploy/bootstrap.sh installs mosquitto-clients"
    call = [found_rr, "-V", "5", "-h", dev.host, "-p", str(dev.callers_port), "-u", dev.user]
    call += ["-P", dev.password, "-W", "20", "-e", f"reply/{dev.user}/rr"]
    token = ["-D", "publish", "user-property", "authorization", f"Bearer {dev.env_sh['DORMANT_TOKEN']}"]
    new_user = '{"email": "rr@example.com", "name": "Rr"}'
    create = [*call, "-t", "service/user-service-node/createUser", "-m", new_user, *token]
    done = subprocess.run(create, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    user_id = json.loads(done.stdout)["userId"]
    get = [*call, "-t", "service/user-service-node/getUser", "-m", json.dumps({"userId": user_id}), *token]
    done = subprocess.run(get, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["userId"] == user_id and record["email"] == "rr@example.com"
