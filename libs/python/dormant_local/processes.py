"""Child processes of the local mesh (broker, database): who they run as, and that none outlives Dormant.

Each child runs in its own session (a terminal's Ctrl-C reaches only Dormant, which stops them in order),
gets a parent-death signal through util-linux ``setpriv`` when that is available, and is stopped by an
``atexit`` hook if its owner forgot. When Dormant runs as root, children that refuse root (Postgres) run as
an unprivileged service user: ``$DORMANT_SERVICE_USER``, else ``dormant`` (created as a system user when
missing), else ``nobody``.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import os
import pwd
import shutil
import signal
import stat
import subprocess
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from .ports import wait_until

SERVICE_USER_ENV = "DORMANT_SERVICE_USER"
DEFAULT_SERVICE_USER = "dormant"


@dataclass(frozen=True)
class ServiceUser:
    """An unprivileged account that a child process runs as."""

    name: str
    uid: int
    gid: int


def _lookup(name: str) -> ServiceUser | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return ServiceUser(name=name, uid=entry.pw_uid, gid=entry.pw_gid)


def _create_system_user(name: str) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        check=False,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def service_user() -> ServiceUser | None:
    """The account for children that must not run as root; None when Dormant itself is not root."""
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get(SERVICE_USER_ENV, "").strip()
    if wanted:
        found = _lookup(wanted)
        if found is None:
            raise RuntimeError(f"{SERVICE_USER_ENV}={wanted!r} names no user on this machine")
        return found
    found = _lookup(DEFAULT_SERVICE_USER)
    if found is None:
        _create_system_user(DEFAULT_SERVICE_USER)
        found = _lookup(DEFAULT_SERVICE_USER)
    if found is not None:
        return found
    nobody = pwd.getpwnam("nobody")
    try:
        gid = grp.getgrnam("nogroup").gr_gid
    except KeyError:
        gid = nobody.pw_gid
    return ServiceUser(name="nobody", uid=nobody.pw_uid, gid=gid)


def make_traversable(path: Path) -> None:
    """Let other users walk down to ``path``: add o+x (search, not listing) to it and every ancestor."""
    for directory in [path, *path.parents]:
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


def chown_tree(path: Path, user: ServiceUser) -> None:
    """Give ``path`` and everything under it to ``user``."""
    os.chown(path, user.uid, user.gid)
    for root, dirs, files in os.walk(path):
        for name in [*dirs, *files]:
            os.chown(os.path.join(root, name), user.uid, user.gid, follow_symlinks=False)


_live: set[ChildProcess] = set()


class ChildProcess:
    """One long-running child: spawned detached from the terminal, stopped gracefully or killed."""

    def __init__(
        self,
        argv: list[str],
        *,
        name: str,
        log_file: Path | None,
        user: ServiceUser | None = None,
        stop_signal: signal.Signals = signal.SIGTERM,
        cwd: Path | None = None,
    ) -> None:
        self.argv = argv
        self.name = name
        self.log_file = log_file
        self.user = user
        self.stop_signal = stop_signal
        self.cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def _command(self) -> tuple[list[str], dict[str, object]]:
        setpriv = shutil.which("setpriv")
        extra: dict[str, object] = {}
        if setpriv is None:
            if self.user is not None:
                extra = {"user": self.user.uid, "group": self.user.gid, "extra_groups": []}
            return list(self.argv), extra
        prefix = [setpriv, f"--pdeathsig={self.stop_signal.name.removeprefix('SIG')}"]
        if self.user is not None:
            prefix += [f"--reuid={self.user.uid}", f"--regid={self.user.gid}", "--clear-groups"]
        return [*prefix, "--", *self.argv], extra

    def spawn(self) -> None:
        """Start the child (not waiting for it to be ready)."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        argv, extra = self._command()
        log: IO[bytes] | int = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            log = self.log_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.cwd,
                start_new_session=True,
                close_fds=True,
                **extra,  # type: ignore[call-overload]
            )
        finally:
            if not isinstance(log, int):
                log.close()
        _live.add(self)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the child wrote, for error messages."""
        if self.log_file is None or not self.log_file.exists():
            return "(no log)"
        text = self.log_file.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def signal(self, signum: signal.Signals) -> None:
        """Send ``signum`` to the child if it still runs."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signum)

    async def stop(self, grace: float = 15.0) -> None:
        """Ask the child to stop with its stop signal; kill it if it has not exited after ``grace`` s."""
        proc = self._proc
        if proc is None:
            return
        self.signal(self.stop_signal)
        with contextlib.suppress(TimeoutError):
            await wait_until(lambda: proc.poll() is not None, within=grace)
        self.kill()

    def stop_blocking(self, grace: float = 10.0) -> None:
        """``stop`` for places without an event loop (atexit, finalizers)."""
        if self._proc is None:
            return
        self.signal(self.stop_signal)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(grace)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the child and everything in its process group, and reap it."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        _live.discard(self)


class ServerProcess(ABC):
    """What a local server child (the broker, Postgres) shares: its pid, stop, kill, restart and
    ``async with``. Subclasses implement ``start`` and set ``self._child``."""

    stop_grace_s = 10.0
    """How long ``stop`` waits after the polite signal before it kills."""

    def __init__(self) -> None:
        self._child: ChildProcess | None = None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.running

    @abstractmethod
    async def start(self) -> None:
        """Start the server and return once it accepts connections."""

    async def stop(self) -> None:
        """Ask the server to shut down cleanly and wait for it to exit."""
        if self._child is not None:
            await self._child.stop(grace=self.stop_grace_s)

    def kill(self) -> None:
        """SIGKILL the server (and its process group), as in a crash."""
        if self._child is not None:
            self._child.kill()

    async def restart(self) -> None:
        """Stop and start again on the same port with the same data."""
        await self.stop()
        await self.start()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def live_children() -> list[ChildProcess]:
    """Children spawned by this process that have not been stopped or killed yet."""
    return [child for child in _live if child.running]


@atexit.register
def _stop_all() -> None:
    for child in list(_live):
        child.stop_blocking()
