"""A pod that provides several base runtimes starts, for each claim, the runtime of the deployment's base
image (``--runtime-cmd IMAGE=CMD``, built-in defaults per image); the warm standby is the first image's."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sidecar_helpers import FAKE_RUNTIME, read_log, wait_for

from dormant_sidecar import Pod
from dormant_sidecar.cli import build_parser, pod_from_args, runtime_commands
from dormant_sidecar.pod import NODE_MAIN, default_runtime_cmd

DeployApp = Callable[..., Awaitable[int]]
StartPod = Callable[..., Awaitable[Pod]]


def events(log: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in read_log(log) if e["event"] == kind] if log.exists() else []


async def test_a_node_deployment_gets_the_node_runtime(
    deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path, tmp_path: Path
) -> None:
    node_log = tmp_path / "node-runtime.log"
    # The "node" runtime is the fake one writing to a log of its own, so the test sees which command ran.
    node_cmd = ["env", f"FAKE_RUNTIME_LOG={node_log}", *FAKE_RUNTIME]
    await deploy_app("js-svc", "hello from node", base_image="dormant-node:1")
    pod = await start_pod(
        base_images=("dormant-python:1", "dormant-node:1"), runtime_cmds={"dormant-node:1": node_cmd}
    )
    [load] = await wait_for(lambda: events(node_log, "load"), what="the node runtime loaded")
    assert (load["service"], load["content"]) == ("js-svc", "hello from node")
    assert pod.runtime is not None and pod.runtime.pid == load["pid"]
    # The python runtime (the standby of the pod's first base image) never loaded anything.
    assert events(runtime_log, "start") and not events(runtime_log, "load")
    assert pod.supervisor is not None and pod.supervisor.standby is not None
    assert pod.supervisor.standby.pid != load["pid"] and pod.supervisor.standby.running


async def test_a_python_deployment_keeps_the_standby(
    deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path, tmp_path: Path
) -> None:
    node_log = tmp_path / "node-runtime.log"
    await deploy_app("py-svc", "hello from python")
    await start_pod(
        base_images=("dormant-python:1", "dormant-node:1"),
        runtime_cmds={"dormant-node:1": ["env", f"FAKE_RUNTIME_LOG={node_log}", *FAKE_RUNTIME]},
    )
    [load] = await wait_for(lambda: events(runtime_log, "load"), what="the python runtime loaded")
    assert load["service"] == "py-svc"
    assert not node_log.exists()


def test_runtime_command_defaults_and_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DORMANT_NODE_RUNTIME", raising=False)
    assert default_runtime_cmd("dormant-python:1") == (sys.executable, "-m", "dormant_runtime")
    node = default_runtime_cmd("dormant-node:1")
    assert node is not None and node[-1] == str(NODE_MAIN) and Path(node[0]).name.startswith("node")
    assert NODE_MAIN.parts[-4:] == ("runtimes", "node", "dist", "main.js")
    assert default_runtime_cmd("dormant-ruby:1") is None
    monkeypatch.setenv("DORMANT_NODE_RUNTIME", "/opt/dormant/main.js")
    assert default_runtime_cmd("dormant-node:1") == (node[0], "/opt/dormant/main.js")
    monkeypatch.setenv("DORMANT_NODE_RUNTIME", "node --max-old-space-size=256 /opt/main.js")
    assert default_runtime_cmd("dormant-node:1") == ("node", "--max-old-space-size=256", "/opt/main.js")

    plain, per_image = runtime_commands(["python3 -m my_runtime", "dormant-node:1=node /x/main.js --fast"])
    assert plain == ["python3", "-m", "my_runtime"]
    assert per_image == {"dormant-node:1": ["node", "/x/main.js", "--fast"]}
    with pytest.raises(SystemExit):
        runtime_commands(["dormant-node:1="])
    args = build_parser().parse_args(
        ["--layer-store", "/tmp/layers", "--base-image", "dormant-node:1",
         "--runtime-cmd", "dormant-node:1=node /y/main.js"]
    )  # fmt: skip
    pod = pod_from_args(args)
    assert pod.runtime_cmd_for("dormant-node:1") == ("node", "/y/main.js")
    assert pod.runtime_cmd_for("dormant-python:1") == (sys.executable, "-m", "dormant_runtime")
