"""The ``dormant`` command as a user runs it: generate, build, publish, deploy, call, dev."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dormant_local import MosquittoProcess

from .mesh import EXAMPLE, PROBE, ROOT, child_env, copy_service


def dormant(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dormant_cli", *args],
        capture_output=True,
        text=True,
        env=env or child_env(),
        timeout=timeout,
        cwd=ROOT,
    )


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_is_byte_identical_and_check_catches_stale_output(tmp_path: Path) -> None:
    service = copy_service(EXAMPLE, tmp_path / "svc")
    assert dormant("generate", str(service)).returncode == 0
    first = _tree(service / "generated")
    assert dormant("generate", str(service)).returncode == 0
    assert _tree(service / "generated") == first
    assert dormant("generate", "--check", str(service)).returncode == 0

    schema = service / "schemas" / "users.json"
    schema.write_text(schema.read_text().replace('"maxLength": 100', '"maxLength": 80', 1))
    stale = dormant("generate", "--check", str(service))
    assert stale.returncode != 0 and "stale" in stale.stderr
    assert _tree(service / "generated") == first  # --check writes nothing


def test_the_committed_example_is_not_stale() -> None:
    result = dormant("generate", "--check", str(EXAMPLE))
    assert result.returncode == 0, result.stderr


def test_schema_errors_print_path_line_col(tmp_path: Path) -> None:
    service = copy_service(PROBE, tmp_path / "svc")
    schema = service / "schemas" / "probe.json"
    lines = schema.read_text().splitlines()
    lines[3] = lines[3].replace('"maxLength": 50', '"maxLength": "fifty"')
    schema.write_text("\n".join(lines) + "\n")
    result = dormant("generate", str(service))
    assert result.returncode != 0
    assert re.search(
        r"probe\.json:4:\d+: error: .*maxLength|probe\.json:4:\d+: error: .*fifty", result.stderr
    ), result.stderr


def test_build_twice_gives_the_same_digest(tmp_path: Path) -> None:
    env = child_env(DORMANT_LAYER_STORE=str(tmp_path / "layers"))
    first = dormant("build", str(EXAMPLE), env=env)
    second = dormant("build", str(EXAMPLE), env=env)
    assert first.returncode == 0, first.stderr
    digest = first.stdout.strip()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert second.stdout.strip() == digest
    other = dormant("build", str(copy_service(EXAMPLE, tmp_path / "elsewhere")), env=env)
    assert other.stdout.strip() == digest  # the path it was built from does not matter


def test_publish_deploy_call_from_the_command_line(
    broker: MosquittoProcess, catalog_url: str, tmp_path: Path
) -> None:
    env = child_env(
        DORMANT_BROKER_URL=broker.url,
        DORMANT_CATALOG_URL=catalog_url,
        DORMANT_LAYER_STORE=str(tmp_path / "layers"),
    )
    published = dormant("publish", str(PROBE), env=env)
    assert published.returncode == 0, published.stderr
    assert published.stdout.strip() == "published probe-service v1"
    pod = subprocess.Popen(
        [sys.executable, "-m", "dormant_cli", "pod", "--lease", "2", "--work-dir", str(tmp_path / "pod")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deployed = dormant("deploy", "probe-service", "--replicas", "1", env=env)
        assert deployed.returncode == 0, deployed.stderr
        # deploy waits until the replica really serves the version, so the first call succeeds.
        assert deployed.stdout.strip() == "deployed probe-service v1 on 1 slot(s): 1/1 replicas serving v1"
        result = dormant("call", "probe-service.echo", '{"text": "cli"}', "--timeout", "5", env=env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["text"] == "cli"
        bad = dormant("call", "probe-service.echo", '{"text": 5}', env=env)
        assert bad.returncode == 1
        assert bad.stderr.startswith("error: ValidationError:")
        missing = dormant("call", "probe-service.nothingHere", "{}", env=env)
        assert missing.returncode == 1 and "NotFound" in missing.stderr
    finally:
        pod.send_signal(signal.SIGTERM)
        assert pod.wait(20) == 0


def test_call_without_a_broker_is_unavailable(tmp_path: Path) -> None:
    from dormant_local import free_port

    result = dormant("call", "x.y", "{}", "--broker-url", f"mqtt://127.0.0.1:{free_port()}")
    assert result.returncode == 1 and "Unavailable" in result.stderr


@pytest.mark.slow
def test_dormant_dev_serves_the_example_and_leaves_no_orphans(tmp_path: Path) -> None:
    env = child_env()
    for key in ("DORMANT_BROKER_URL", "DORMANT_CATALOG_URL", "DORMANT_LAYER_STORE"):
        env.pop(key, None)
    dev = subprocess.Popen(
        [sys.executable, "-m", "dormant_cli", "dev", "--pods", "2", "--state-dir", str(tmp_path / "state")],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert dev.stdout is not None and dev.stderr is not None
        line = dev.stdout.readline()
        assert line.strip() == "ready", dev.stderr.read() if dev.poll() is not None else line
        children = _descendants(dev.pid)
        assert len(children) >= 6  # broker, postgres, 2 sidecars, 1 serving runtime, standbys
        broker_url = _broker_url_from(tmp_path / "state")
        create = ("call", "user-service.createUser", '{"email": "dev@example.com", "name": "Dev"}')
        forged = dormant(*create, "--broker-url", broker_url, "--token", "not-a-jwt")
        assert forged.returncode == 1 and "Unauthenticated" in forged.stderr
        token_file = tmp_path / "state" / "dev-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        token = token_file.read_text().strip()
        result = dormant(*create, "--broker-url", broker_url, "--token", token)
        assert result.returncode == 0, result.stderr
        assert "userId" in json.loads(result.stdout)
        assert f"export DORMANT_TOKEN={token}" in (tmp_path / "state" / "env.sh").read_text()
        _check_tokens_from_the_identity_provider(tmp_path)
        controller_log = tmp_path / "state" / "controller.log"
        for _ in range(100):  # the rollout controller runs and holds the leader lock
            if "is the active controller" in controller_log.read_text():
                break
            time.sleep(0.1)
        assert "is the active controller" in controller_log.read_text()
    finally:
        dev.send_signal(signal.SIGINT)
        code = dev.wait(60)
    assert code == 0
    assert not (tmp_path / "state" / "mesh.json").exists()
    time.sleep(0.5)
    assert [pid for pid in children if _alive(pid)] == []


def _check_tokens_from_the_identity_provider(tmp_path: Path) -> None:
    """``dormant token`` asks the dev mesh's OIDC provider; the mesh's gateway trusts it and nothing else."""
    state = tmp_path / "state"
    info = json.loads((state / "mesh.json").read_text())
    issued = dormant("token", "--user", "alice", "--role", "developer", "--state-dir", str(state))
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert (claims["iss"], claims["sub"], claims["roles"]) == (info["oidcIssuer"], "alice", ["developer"])
    functions = f"{info['gatewayUrl']}/api/v1/functions"
    assert httpx.get(functions, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
    # A token signed by some other key (a gateway dev key of another directory) is refused.
    other = dormant("token", "--role", "developer", "--state-dir", str(tmp_path / "elsewhere")).stdout.strip()
    refused = httpx.get(functions, headers={"Authorization": f"Bearer {other}"}, timeout=10)
    assert refused.status_code == 401, refused.text


def _broker_url_from(state: Path) -> str:
    info = json.loads((state / "mesh.json").read_text())
    assert info["service"] == "user-service" and info["pods"] == 2 and info["replicas"] == 1
    env = (state / "env.sh").read_text()
    assert f"export DORMANT_BROKER_URL={info['brokerUrl']}" in env
    return str(info["brokerUrl"])


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False
