"""The CLI's read commands as a user runs them on a real mesh: ``ls``, ``versions``, ``pods``,
``history``, ``status`` (tables when piped, ``--json``), ``undeploy``, an unknown service, an
unreachable catalog, and output cut short by ``| head``, none of which prints a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dormant_local import free_port

from .mesh import PROBE, ROOT, Mesh, child_env, copy_service

SERVICE = "cli-read"


def _probe(tmp: Path, folder: str, release: str) -> Path:
    """The probe service as ``cli-read``; ``release`` changes its code, so it publishes a new version."""
    service = copy_service(PROBE, tmp / folder)
    module = service / "probe.py"
    text = module.read_text().replace(
        '@service("probe-service", auth="off")', f'@service("{SERVICE}", auth="off")'
    )
    module.write_text(text.replace('RELEASE = "one"', f'RELEASE = "{release}"'))
    return service


def _env(mesh: Mesh) -> dict[str, str]:
    return child_env(
        DORMANT_BROKER_URL=mesh.broker_url,
        DORMANT_CATALOG_URL=mesh.catalog_url,
        DORMANT_LAYER_STORE=str(mesh.layer_store),
    )


def dormant(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dormant_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=ROOT,
    )


def shell(command: str, *, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, shell=True, capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)


def into_closed_pipe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run with stdout a pipe whose reader has gone: every write fails with EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "dormant_cli", *args],
            stdout=write, stderr=subprocess.PIPE, text=True, env=env, timeout=60, cwd=ROOT,
        )  # fmt: skip
    finally:
        os.close(write)


def ok(*args: str, env: dict[str, str]) -> str:
    result = dormant(*args, env=env)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "\x1b[" not in result.stdout, result
    return result.stdout


def as_json(*args: str, env: dict[str, str]) -> Any:
    return json.loads(ok(*args, "--json", env=env))


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ") and "Traceback" not in result.stderr
    return line


async def test_read_commands_on_a_running_mesh(mesh: Mesh, tmp_path: Path) -> None:
    env = _env(mesh)
    assert (await mesh.publish(_probe(tmp_path, "v1", "one")))[1] == 1
    assert (await mesh.publish(_probe(tmp_path, "v2", "two")))[1] == 2
    mesh.start_pod("read-pod-1")
    mesh.start_pod("read-pod-2")
    ok("approve", SERVICE, "1", env=env)
    deployed = ok("deploy", SERVICE, "--version", "1", "--wait", "60", env=env)
    assert deployed.strip() == f"deployed {SERVICE} v1 on 1 slot(s): 1/1 replicas serving v1"

    # ls: the service, its latest version, what is deployed, replicas serving, aliases and weights.
    table = ok("ls", env=env).splitlines()
    assert table[0].split() == ["SERVICE", "LATEST", "DEPLOYED", "SERVING", "ALIASES"]
    assert table[1].split() == [SERVICE, "v2", "(built)", "v1", "1/1", "live", "v1=100%"]
    [service] = as_json("ls", env=env)["services"]
    assert service == {
        "service": SERVICE,
        "latest": 2,
        "latestStatus": "built",
        "versions": 2,
        "deployed": 1,
        "replicas": 1,
        "slots": 1,
        "serving": 1,
        "aliases": {"live": {"1": 100}},
    }
    assert ok("ls", "-q", env=env) == f"{SERVICE}\n"

    # versions: number, created, status, short digest, aliases, serving.
    table = ok("versions", SERVICE, env=env).splitlines()
    assert table[0].split() == ["VERSION", "STATUS", "CREATED", "BY", "DIGEST", "ALIASES", "SERVING"]
    assert table[1].split()[:2] == ["v1", "approved"] and table[1].split()[-2:] == ["live=100%", "1/1"]
    assert table[2].split()[:2] == ["v2", "built"] and table[2].split()[-2:] == ["-", "-"]
    versions = as_json("versions", SERVICE, env=env)["versions"]
    assert [(v["version"], v["status"], v["deployed"], v["serving"]) for v in versions] == [
        (1, "approved", True, 1),
        (2, "built", False, 0),
    ]
    assert versions[0]["digest"].startswith("sha256:") and versions[0]["digest"][7:19] in table[1]

    # pods: one serving the service, one free in the pool.
    pods = {p["pod"]: p for p in as_json("pods", env=env)["pods"]}
    assert sorted((p["state"], p["service"], p["version"]) for p in pods.values()) == [
        ("free", None, None),
        ("serving", SERVICE, 1),
    ]
    table = ok("pods", env=env).splitlines()
    header = ["POD", "STATE", "SERVICE", "VERSION", "SINCE", "LAST", "SEEN", "HEALTH", "RESTARTS"]
    assert table[0].split() == header
    assert any(line.split()[1:4] == ["serving", SERVICE, "v1"] for line in table[1:])

    # history and status: tables when piped, JSON with --json.
    history = as_json("history", SERVICE, env=env)
    assert {"register", "set-status", "deploy"} <= {a["action"] for a in history["audit"]}
    table = ok("history", SERVICE, env=env).splitlines()
    assert table[0].split() == ["AT", "KIND", "ACTOR", "ACTION", "DETAIL"]
    assert len(table) == 1 + len(history["audit"])
    status = as_json("status", SERVICE, "--listen", "0", env=env)
    assert status["serving"]["state"] == "running" and status["aliases"] == {"live": {"1": 100}}

    # Cut short by `head`: the first line, and no traceback.
    piped = shell(f"{sys.executable} -m dormant_cli history {SERVICE} --json | head -1", env=env)
    assert piped.stdout == "{\n" and piped.stderr == "", piped.stderr
    closed = into_closed_pipe("versions", SERVICE, env=env)
    assert closed.stderr == "" and closed.returncode == 141

    # Unknown services: one line, exit 1.
    for args in (["versions", "nosuch"], ["undeploy", "nosuch"], ["history", "nosuch"], ["status", "nosuch"]):
        assert "'nosuch'" in one_error_line(dormant(*args, env=env)), args
    called = one_error_line(dormant("call", "nosuch.fn", "{}", env=env))
    assert called == "error: NotFound: no service named 'nosuch'"

    # undeploy: the slots go, every pod is back in the pool, the versions stay.
    assert ok("undeploy", SERVICE, env=env).startswith(f"undeployed {SERVICE} (v1 on 1 slot(s))")
    assert ok("undeploy", SERVICE, env=env).strip() == f"{SERVICE} was not deployed"
    assert [p["state"] for p in as_json("pods", env=env)["pods"]] == ["free", "free"]
    [service] = as_json("ls", env=env)["services"]
    assert (service["deployed"], service["serving"], service["aliases"]) == (None, 0, {"live": {}})
    assert "undeploy" in {a["action"] for a in as_json("history", SERVICE, env=env)["audit"]}


def test_an_unreachable_catalog_is_one_line_and_says_how_to_point_elsewhere() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/dormant"  # nothing listens there
    env = child_env(DORMANT_CATALOG_URL=url)
    for command in (["ls"], ["pods"], ["versions", SERVICE]):
        line = one_error_line(dormant(*command, env=env))
        assert line.startswith(
            f"error: cannot reach the catalog (Postgres) at {url} (from $DORMANT_CATALOG_URL)"
        )
        assert "start a dev mesh with `dormant dev`, or point elsewhere with DORMANT_CATALOG_URL" in line
