"""A private RabbitMQ node (queue triggers) for ``dormant dev --rabbitmq`` and the tests: its own node
name, ports, data and log directories.

Uses the ``rabbitmq-server`` Debian package (``deploy/bootstrap.sh`` installs it); never the machine's
own RabbitMQ service. Starts in about three seconds.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from .ports import free_port, port_accepts, wait_until
from .processes import ChildProcess

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"


def find_server() -> str:
    server = SERVER if os.path.exists(SERVER) else shutil.which("rabbitmq-server")
    if server is None:
        raise RuntimeError(
            "rabbitmq-server is not installed: run deploy/bootstrap.sh (apt-get install rabbitmq-server)"
        )
    return server


class RabbitNode:
    """A RabbitMQ node on 127.0.0.1 with everything under ``base``; ``url`` is its AMQP address."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.dist_port = free_port()
        self.name = f"dormant-{uuid.uuid4().hex[:8]}@localhost"
        self._child: ChildProcess | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    async def start(self) -> None:
        server = find_server()
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users = none\n"
        )
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "env.conf").write_text("")
        env = {
            "HOME": str(self.base),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "env.conf"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base / "advanced.config"),
        }
        argv = ["env", *(f"{k}={v}" for k, v in env.items()), server]
        self._child = ChildProcess(argv, name="rabbitmq", log_file=self.base / "server.log")
        self._child.spawn()
        child = self._child
        await wait_until(
            lambda: port_accepts(self.port),
            within=60,
            failed=lambda: None if child.running else f"rabbitmq exited:\n{child.log_tail()}",
        )

    async def stop(self) -> None:
        if self._child is not None:
            await self._child.stop(grace=15)
