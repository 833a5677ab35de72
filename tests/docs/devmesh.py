"""A scratch copy of the repository with a dev mesh running in it, as after ``bash deploy/mesh.sh``.

The copy holds what the documents use (README, docs, examples) and a ``.venv`` link to the
checkout's, so ``hello/``, ``.dormant/dev`` and whatever else a document writes stay out of the
checkout. The mesh is ``dormant dev [ARGS]`` started in the copy, exactly as ``deploy/mesh.sh`` starts
it (its own Postgres and Mosquitto on free ports, state in ``.dormant/dev``); it is ready when it prints
``ready``, and stopped with SIGINT, as Ctrl-C stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

from .blocks import ROOT

# Not deploy/ or pyproject.toml: a block that runs deploy/bootstrap.sh or `pip install -e .` by mistake
# would reinstall the checkout's shared .venv from the copy; without them it fails instead.
COPIED = ("README.md", "docs", "examples")
SOURCE_ROOTS = ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")
START_TIMEOUT_S = 120.0
STOP_GRACE_S = 30.0


def make_copy(dest: Path) -> Path:
    """``dest``/repo: the documents' files and a link to the checkout's virtualenv."""
    repo = dest / "repo"
    repo.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", ".dormant", ".pytest_cache", ".mypy_cache")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, repo / name)
    (repo / ".venv").symlink_to(ROOT / ".venv")
    return repo


def reader_env(home: Path) -> dict[str, str]:
    """A reader's shell after ``source .venv/bin/activate``, with no ``DORMANT_*`` variable set.

    PYTHONPATH names the checkout's source roots, so the run does not depend on the editable install
    being current with packages added since the last bootstrap."""
    home.mkdir(parents=True, exist_ok=True)
    venv = ROOT / ".venv"
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TERM": "dumb",
        "VIRTUAL_ENV": str(venv),
        "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in SOURCE_ROOTS),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("USER", "LOGNAME", "TMPDIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


class DevMesh:
    """``dormant dev ARGS`` running in ``repo``; its output goes to ``log``."""

    def __init__(self, repo: Path, args: list[str], env: dict[str, str], log: Path) -> None:
        self.repo = repo
        self.args = args
        self.env = env
        self.log = log
        self.started_in = 0.0
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        begin = time.monotonic()
        with self.log.open("wb") as out:
            self._process = await asyncio.create_subprocess_exec(
                str(ROOT / ".venv" / "bin" / "dormant"),
                "dev",
                *self.args,
                cwd=self.repo,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        while "\nready\n" not in "\n" + self.log.read_text(errors="replace"):
            if self._process.returncode is not None:
                raise RuntimeError(f"dormant dev {' '.join(self.args)} exited:\n{self.tail()}")
            if time.monotonic() - begin > START_TIMEOUT_S:
                raise RuntimeError(f"dormant dev not ready after {START_TIMEOUT_S:g}s:\n{self.tail()}")
            await asyncio.sleep(0.1)
        self.started_in = time.monotonic() - begin

    async def stop(self) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except TimeoutError:
            # Its children get SIGTERM when it dies (parent-death signal).
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    def tail(self, chars: int = 4000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return text[-chars:]
