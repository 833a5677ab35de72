"""A private Mosquitto broker process with Dormant's configuration, for ``dormant dev`` and the tests."""

from __future__ import annotations

import os
import pwd
import shutil
from importlib import resources
from pathlib import Path

from .ports import free_port, port_accepts, wait_until
from .processes import ChildProcess, ServerProcess

INSTALL_HINT = "apt-get install mosquitto mosquitto-clients"
_SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/snap/bin")


class MosquittoNotInstalled(RuntimeError):
    """No ``mosquitto`` executable on this machine."""

    def __init__(self) -> None:
        super().__init__(
            f"Mosquitto is not installed; install it with `{INSTALL_HINT}` "
            "(or run deploy/bootstrap.sh), or set DORMANT_MOSQUITTO to the executable"
        )


def find_mosquitto() -> str:
    """Path of the mosquitto executable: ``$DORMANT_MOSQUITTO``, then PATH, then the usual sbin dirs."""
    override = os.environ.get("DORMANT_MOSQUITTO")
    if override:
        if os.access(override, os.X_OK):
            return override
        raise MosquittoNotInstalled()
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path=os.pathsep.join(_SEARCH_PATH))
    if found is None:
        raise MosquittoNotInstalled()
    return found


def config_template() -> str:
    """Dormant's Mosquitto configuration template (placeholders for ``str.format``)."""
    return resources.files("dormant_local").joinpath("mosquitto.conf").read_text(encoding="utf-8")


def render_config(*, port: int, data_dir: Path, acl_file: Path | None = None) -> str:
    """Dormant's Mosquitto configuration for one local broker; logs go to stderr."""
    acl_line = "# acl_file: none, every client may use any topic"
    if acl_file is not None:
        acl_line = f"acl_file {acl_file}"
    return config_template().format(
        port=port,
        data_dir=data_dir,
        user=pwd.getpwuid(os.geteuid()).pw_name,
        log_dest="stderr",
        acl_file_line=acl_line,
    )


class MosquittoProcess(ServerProcess):
    """A Mosquitto child process listening on 127.0.0.1; persistence lives in ``data_dir``."""

    stop_grace_s = 15.0
    start_timeout = 15.0

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path,
        acl_file: Path | None = None,
        log_file: Path | None = None,
    ) -> None:
        super().__init__()
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.data_dir = Path(data_dir).absolute()
        self.acl_file = Path(acl_file).absolute() if acl_file is not None else None
        self.log_file = Path(log_file).absolute() if log_file is not None else self.data_dir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def config_file(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    async def start(self) -> None:
        """Start the broker and wait until its port accepts connections."""
        if self.running:
            return
        executable = find_mosquitto()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 3 if self._auto_port else 1
        for attempt in range(attempts):
            config = render_config(port=self.port, data_dir=self.data_dir, acl_file=self.acl_file)
            self.config_file.write_text(config, encoding="utf-8")
            child = ChildProcess(
                [executable, "-c", str(self.config_file)], name="mosquitto", log_file=self.log_file
            )
            child.spawn()
            self._child = child
            try:
                await wait_until(self._accepts, within=self.start_timeout, failed=self._failed)
                self._auto_port = False  # restarts keep the port
                return
            except (RuntimeError, TimeoutError) as exc:
                child.kill()
                port_taken = "Address already in use" in child.log_tail()
                if port_taken and attempt + 1 < attempts:
                    self.port = free_port()
                    continue
                raise RuntimeError(
                    f"mosquitto did not start on port {self.port}: {exc}\n{child.log_tail()}"
                ) from exc

    def _accepts(self) -> bool:
        return port_accepts(self.port)

    def _failed(self) -> str | None:
        child = self._child
        if child is not None and not child.running:
            return f"mosquitto exited with status {child.returncode}"
        return None
