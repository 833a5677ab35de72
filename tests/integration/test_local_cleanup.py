"""No broker or database outlives the process that started it: not on exit, not when it is SIGKILLed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

from dormant_local.ports import wait_until

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from dormant_local import LocalPostgres, MosquittoProcess

    async def main() -> None:
        root = Path(sys.argv[1])
        broker = MosquittoProcess(data_dir=root / "broker")
        pg = LocalPostgres(data_dir=root / "pg")
        await broker.start()
        await pg.start()
        print(broker.pid, pg.pid, flush=True)
        if sys.argv[2] == "hang":
            time.sleep(600)

    asyncio.run(main())
    """
)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")  # a zombie has exited; reaping it is its new parent's business


@pytest.mark.parametrize("mode", ["exit", "hang"])
async def test_children_die_with_their_parent(mode: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="dormant-test-cleanup-"))
    try:
        parent = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            SCRIPT,
            str(root),
            mode,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        assert parent.stdout is not None
        line = await asyncio.wait_for(parent.stdout.readline(), 60)
        pids = [int(pid) for pid in line.split()]
        assert len(pids) == 2
        assert not any(_gone(pid) for pid in pids)
        if mode == "hang":
            parent.send_signal(signal.SIGKILL)
        await asyncio.wait_for(parent.wait(), 60)
        await wait_until(lambda: all(_gone(pid) for pid in pids), within=30)
    finally:
        shutil.rmtree(root, ignore_errors=True)
