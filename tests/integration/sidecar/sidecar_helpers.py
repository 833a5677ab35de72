"""Helpers for sidecar tests: layers, the fake runtime's log, process checks, polling, pod commands."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shlex
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
FAKE_RUNTIME = [sys.executable, str(HERE / "fake_runtime.py")]
SOURCE_PATH = os.pathsep.join(
    str(ROOT / p) for p in ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python")
)


def layer_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = text.encode()
        info = tarfile.TarInfo("app.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def wait_for(predicate: Callable[[], Any], within: float = 10.0, what: str = "condition") -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.05)


def pod_command(
    *, catalog_url: str, layer_store: Path, work_dir: Path, pod_id: str, lease_s: float = 1.0
) -> list[str]:
    return [
        sys.executable, "-m", "dormant_sidecar",
        "--broker-url", "mqtt://127.0.0.1:1",
        "--catalog-url", catalog_url,
        "--layer-store", str(layer_store),
        "--work-dir", str(work_dir),
        "--pod-id", pod_id,
        "--lease", str(lease_s),
        "--poll-interval", "0.5",
        "--drain-timeout", "5",
        "--runtime-cmd", shlex.join(FAKE_RUNTIME),
    ]  # fmt: skip


def subprocess_env(runtime_log: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SOURCE_PATH, "FAKE_RUNTIME_LOG": str(runtime_log)}
