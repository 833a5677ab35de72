"""A private NATS server with JetStream (stream triggers) for ``dormant dev`` and the tests: its own
port, JetStream store directory and log.

Uses the ``nats-server`` Debian package (``deploy/bootstrap.sh`` installs it) or ``$DORMANT_NATS_SERVER``;
never a NATS server already running on the machine (:4222). Listens on 127.0.0.1 only, without
authentication, like the dev broker without a security plan; starts in well under a second.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .ports import free_port, port_accepts, wait_until
from .processes import ChildProcess, ServerProcess

INSTALL_HINT = "apt-get install nats-server"
SERVER_ENV = "DORMANT_NATS_SERVER"
_SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin")


class NatsNotInstalled(RuntimeError):
    """No ``nats-server`` executable on this machine."""

    def __init__(self) -> None:
        super().__init__(
            f"nats-server is not installed; install it with `{INSTALL_HINT}` (or run deploy/bootstrap.sh), "
            f"or set {SERVER_ENV} to the executable"
        )


def find_nats_server() -> str:
    """Path of nats-server: ``$DORMANT_NATS_SERVER``, then PATH, then the usual sbin/bin dirs."""
    override = os.environ.get(SERVER_ENV)
    if override:
        if os.access(override, os.X_OK):
            return override
        raise NatsNotInstalled()
    found = shutil.which("nats-server") or shutil.which("nats-server", path=os.pathsep.join(_SEARCH_PATH))
    if found is None:
        raise NatsNotInstalled()
    return found


class NatsServer(ServerProcess):
    """nats-server with JetStream on 127.0.0.1, everything under ``base``; ``url`` is its address.

    The port is chosen once, so ``restart`` (or ``stop`` and ``start``) comes back on the same address
    with the same streams and consumer positions (the JetStream store is ``base/jetstream``)."""

    stop_grace_s = 10.0

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def store_dir(self) -> Path:
        return self.base / "jetstream"

    async def start(self) -> None:
        server = find_nats_server()
        self.base.mkdir(parents=True, exist_ok=True)
        self.store_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            server,
            "--addr",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--jetstream",
            "--store_dir",
            str(self.store_dir),
            "--server_name",
            f"dormant-{self.port}",
        ]
        log_file = self.base / "server.log"
        offset = log_file.stat().st_size if log_file.exists() else 0
        child = ChildProcess(argv, name="nats-server", log_file=log_file)
        self._child = child
        child.spawn()

        def ready() -> bool:
            # The port opens before JetStream has recovered its store; "Server is ready" comes after.
            with log_file.open("rb") as log:
                log.seek(offset)
                return b"Server is ready" in log.read() and port_accepts(self.port)

        await wait_until(
            ready,
            within=30,
            failed=lambda: None if child.running else f"nats-server exited:\n{child.log_tail()}",
        )
