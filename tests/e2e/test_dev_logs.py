"""Issue 13's logs acceptance on a real ``dormant dev`` (the example user-service, its broker secured):
``dormant logs user-service -f`` shows a handler's ``ctx.logger`` line with its callId (the sidecar
publishes it with the runtimes' account, the command reads it as the dev mesh's admin), and the
developer's caller account may neither read a service's log topic nor publish into one."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dormant.mqtt import Message, MqttError, ReasonCode, connect

from .dev_mesh import DevMesh, dormant, running_dev

pytestmark = pytest.mark.slow

DEADLINE_S = 30.0
"""Generous for a busy machine; the latency is measured and printed (the goal is well under 1 s)."""


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevMesh]:
    with running_dev(tmp_path_factory.mktemp("dev-logs")) as mesh:
        yield mesh


class Follow:
    """``dormant logs user-service -f --json`` in the dev mesh's shell, read on a thread."""

    def __init__(self, mesh: DevMesh, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dormant_cli", "logs", "user-service", "-f", "--json", "--limit", "0"],
            env=mesh.cli_env(),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.records: list[tuple[float, dict[str, Any]]] = []
        self.following = threading.Event()
        self.stderr: list[str] = []
        threading.Thread(target=self._out, daemon=True).start()
        threading.Thread(target=self._err, daemon=True).start()

    def _out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.records.append((time.time(), json.loads(line)))

    def _err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            if line.startswith("following user-service's logs"):
                self.following.set()

    def wait(self, call_id: str) -> tuple[float, dict[str, Any]]:
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            for arrived, record in list(self.records):
                if record.get("requestId") == call_id:
                    return arrived, record
            time.sleep(0.01)
        raise AssertionError(f"no record of {call_id} within {DEADLINE_S} s: {self.stderr}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def test_logs_follow_shows_a_ctx_logger_line_with_its_call_id(dev: DevMesh) -> None:
    follow = Follow(dev, dev.state)
    try:
        assert follow.following.wait(60), follow.stderr
        call_id = f"signup-{uuid.uuid4().hex[:8]}"
        email = f"{call_id}@example.com"
        done = dormant(
            dev,
            "call",
            "user-service.createUser",
            json.dumps({"email": email, "name": "Log"}),
            "--call-id",
            call_id,
        )
        assert done.returncode == 0, done.stderr
        user_id = json.loads(done.stdout)["userId"]
        arrived, record = follow.wait(call_id)
    finally:
        follow.stop()
    logged = datetime.datetime.fromisoformat(record["timestamp"]).timestamp()
    print(f"\nctx.logger -> dormant logs -f on dormant dev: {(arrived - logged) * 1000:.1f} ms")
    assert record["message"] == f"created user {user_id}"
    assert record["functionName"] == "user-service" and record["version"] == "v1"
    assert not any("reading new records from the catalog" in line for line in follow.stderr)  # live

    stored = dormant(dev, "logs", "user-service", "--call", call_id)
    assert stored.returncode == 0, stored.stderr
    assert f"[{call_id}] created user {user_id}" in stored.stdout


async def test_the_developer_may_neither_read_nor_write_log_topics(dev: DevMesh) -> None:
    conn = await connect(
        dev.host, dev.callers_port, client_id="any", username=dev.user, password=dev.password
    )
    try:
        for topic_filter in ("mesh/logs/#", "mesh/logs/user-service/+"):
            with pytest.raises(MqttError) as caught:
                await conn.subscribe([topic_filter])
            assert caught.value.reason == ReasonCode.NOT_AUTHORIZED
        with pytest.raises(MqttError) as refused:
            await conn.publish(Message("mesh/logs/user-service/v1", b'{"message": "forged"}', qos=1))
        assert refused.value.reason == ReasonCode.NOT_AUTHORIZED
    finally:
        await conn.disconnect()
