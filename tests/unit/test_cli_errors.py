"""The CLI's expected failures are one line on stderr naming what it tried and how to point elsewhere,
never a traceback; a closed pipe ends a command quietly; completion scripts and ``--json`` shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dormant_catalog.listing import PoolEntry, ServiceSummary, VersionSummary
from dormant_cli import EXIT_BROKEN_PIPE, build_parser, list_cmds, main, reach
from dormant_local import free_port

ROOT = Path(__file__).resolve().parents[2]
ENV_NAMES = ("DORMANT_BROKER_URL", "DORMANT_CATALOG_URL", "DORMANT_LAYER_STORE")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def nowhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with no dev mesh above it and no DORMANT_* variables."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _dev_mesh(root: Path, catalog_url: str, broker_url: str) -> None:
    record = root / ".dormant" / "dev" / "mesh.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"catalogUrl": catalog_url, "brokerUrl": broker_url}))


@pytest.mark.parametrize(
    "command", [["ls"], ["versions", "svc"], ["pods"], ["history", "svc"], ["undeploy", "svc"]]
)
def test_an_unreachable_catalog_is_one_line_naming_the_url_and_the_way_out(
    command: list[str], nowhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"postgresql://dormant:secret@127.0.0.1:{free_port()}/dormant"  # nothing listens there
    assert main([*command, "--catalog-url", url]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith(f"error: cannot reach the catalog (Postgres) at {url.replace(':secret', ':***')}")
    assert "(given by --catalog-url)" in line and "secret" not in line
    assert line.endswith(
        "start a dev mesh with `dormant dev`, or point elsewhere with DORMANT_CATALOG_URL or --catalog-url"
    )


def test_a_stale_dev_mesh_record_is_named_as_the_source(
    nowhere: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _dev_mesh(nowhere, f"postgresql://postgres@127.0.0.1:{free_port()}/dormant", "mqtt://127.0.0.1:1")
    assert main(["pods"]) == 1
    assert "(from .dormant/dev/mesh.json: is `dormant dev` still running?)" in capsys.readouterr().err


def test_an_unreachable_broker_is_one_typed_line(nowhere: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    assert main(["call", "user-service.createUser", "{}", "--broker-url", url]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"error: Unavailable: cannot reach the broker (MQTT) at {url} (given by --broker-url)"
    )
    assert line.endswith("or point elsewhere with DORMANT_BROKER_URL or --broker-url")


def test_where_a_url_came_from(nowhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = build_parser().parse_args(["ls"])
    assert reach.source_of(args, "catalog") == "default"
    _dev_mesh(nowhere, "postgresql://x@127.0.0.1:9/d", "mqtt://127.0.0.1:9")
    assert reach.source_of(args, "catalog") == "dev-mesh"
    monkeypatch.setenv("DORMANT_CATALOG_URL", "postgresql://elsewhere/d")
    assert reach.source_of(args, "catalog") == "env"
    assert (
        reach.source_of(build_parser().parse_args(["ls", "--catalog-url", "postgresql://a/b"]), "catalog")
        == "flag"
    )
    message = reach.unreachable(
        "catalog", "postgresql://127.0.0.1:5432/dormant", "default", "Connection refused"
    )
    assert "(the default: no dev mesh is running in this project): Connection refused;" in message


def test_a_driver_error_is_cut_to_its_gist() -> None:
    error = (
        'catalog database unreachable: connection failed: connection to server at "127.0.0.1", port 1 failed:'
        " Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"
    )
    assert reach.first_line(error) == 'connection to server at "127.0.0.1", port 1 failed: Connection refused'
    assert reach.redact("postgresql://u:p@h:1/d") == "postgresql://u:***@h:1/d"
    assert reach.redact("mqtt://h:1") == "mqtt://h:1"


def _run_into_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes, as `| head -1` after its line
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    try:
        return subprocess.run(
            [sys.executable, "-m", "dormant_cli", *args], stdout=write, stderr=subprocess.PIPE, text=True,
            env=env, cwd=ROOT, timeout=60,
        )  # fmt: skip
    finally:
        os.close(write)


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    result = _run_into_closed_pipe("completion", "bash")
    assert result.stderr == ""  # no BrokenPipeError traceback, no "Exception ignored" at exit
    assert result.returncode == EXIT_BROKEN_PIPE


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts_cover_the_commands_and_service_names(
    shell: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("versions", "undeploy", "pods", "--json", "_dormant_services", "dormant ls -q"):
        assert word in script, word


def test_completion_scripts_load_in_bash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "dormant.bash"
    script.write_text(capsys.readouterr().out)
    probe = (
        f"source {script}\n"
        "COMP_WORDS=(dormant vers); COMP_CWORD=1; COMP_LINE='dormant vers'; COMP_POINT=${#COMP_LINE}\n"
        '_shtab_dormant dormant vers dormant; echo "${COMPREPLY[*]}"\n'
    )
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["versions"]


def test_json_shapes_have_stable_keys() -> None:
    service = ServiceSummary("user-service", 2, "approved", 2, 1, 2, 2, 1, {"live": {1: 90, 2: 10}})
    assert list_cmds.services_json([service]) == {
        "services": [
            {
                "service": "user-service",
                "latest": 2,
                "latestStatus": "approved",
                "versions": 2,
                "deployed": 1,
                "replicas": 2,
                "slots": 2,
                "serving": 1,
                "aliases": {"live": {"1": 90, "2": 10}},
            }
        ]
    }
    version = VersionSummary(1, "built", T0, "cli", "svc@sha256:" + "a" * 64, "sha256:b", {"live": 90}, 2, 1)
    [entry] = list_cmds.versions_json("svc", [version])["versions"]
    assert entry == {
        "version": 1,
        "status": "built",
        "createdAt": "2026-01-01T00:00:00+00:00",
        "createdBy": "cli",
        "image": "svc@sha256:" + "a" * 64,
        "digest": "sha256:" + "a" * 64,
        "interfaceHash": "sha256:b",
        "aliases": {"live": 90},
        "deployed": True,
        "slots": 2,
        "serving": 1,
    }
    pod = PoolEntry("pod-1", "free", None, None, None, T0, T0, T0, ["dormant-python:1"])
    assert list(list_cmds.pods_json([pod])["pods"][0]) == [
        "pod", "state", "service", "version", "slot", "since", "registeredAt", "lastSeen", "baseImages",
        "health",
    ]  # fmt: skip


def test_the_services_table_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        ServiceSummary(
            "user-service", 2, "approved", 2, 1, 2, 2, 1, {"live": {1: 90, 2: 10}, "beta": {2: 100}}
        ),
        ServiceSummary("idle", 1, "built", 1, None, 0, 0, 0, {}),
    ]
    list_cmds.services_table(rows)
    assert capsys.readouterr().out.splitlines() == [
        "SERVICE       LATEST         DEPLOYED  SERVING  ALIASES",
        "user-service  v2 (approved)  v1        1/2      live v1=90% v2=10%; beta v2=100%",
        "idle          v1 (built)     -         -        -",
    ]
