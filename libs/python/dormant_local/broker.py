"""A private Mosquitto broker process with Dormant's configuration, for ``dormant dev`` and the tests.

The configuration template (``mosquitto.conf``, the same as ``deploy/mosquitto/dormant.conf.tmpl``) is
the secured form. ``MosquittoProcess`` without a security plan renders it open instead, for tests and
``dormant dev --insecure-broker``: one listener, anonymous clients allowed. With a
``SecurityPlan`` (``dormant_local.broker_security``) it runs secured: the dynamic-security plugin holds
the accounts and their ACLs, anonymous clients are refused, and there are two listeners: ``port`` for
callers (``use_username_as_clientid true``: a caller's client id is its user name, so it can never be
a runtime's) and ``component_port`` for runtimes, the controller and gateways (free client ids, which
``dormant-{svc}-v{N}-s{slot}-g{gen}`` needs to resume a slot's session). Caller accounts are pinned to their
user name as client id, so the components' listener does not let a caller choose one either.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
from importlib import resources
from pathlib import Path

from .broker_security import BrokerAccount, SecurityPlan, TlsFiles, issue_client_certificate, make_tls_files
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


DYNSEC_PLUGIN_ENV = "DORMANT_MOSQUITTO_DYNSEC"
_DYNSEC_PATTERNS = (
    "/usr/lib/*/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/*/mosquitto_dynamic_security.so",
    "/opt/homebrew/lib/mosquitto_dynamic_security.so",
)


class DynsecPluginNotFound(RuntimeError):
    """Mosquitto's dynamic-security plugin is not on this machine (it ships with Mosquitto 2)."""

    def __init__(self) -> None:
        super().__init__(
            "Mosquitto's dynamic-security plugin (mosquitto_dynamic_security.so) was not found; it ships "
            f"with Mosquitto 2 (`{INSTALL_HINT}`), or set {DYNSEC_PLUGIN_ENV} to its path"
        )


def find_dynsec_plugin() -> str:
    """Path of ``mosquitto_dynamic_security.so``: ``$DORMANT_MOSQUITTO_DYNSEC``, then the usual lib dirs."""
    override = os.environ.get(DYNSEC_PLUGIN_ENV)
    if override:
        if os.path.isfile(override):
            return override
        raise DynsecPluginNotFound()
    for pattern in _DYNSEC_PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise DynsecPluginNotFound()


def config_template() -> str:
    """Dormant's Mosquitto configuration template (placeholders for ``str.format``)."""
    return resources.files("dormant_local").joinpath("mosquitto.conf").read_text(encoding="utf-8")


_ACCESS_BLOCK = re.compile(r"^# >>> access.*?^# <<< access\n", re.MULTILINE | re.DOTALL)


def _fill(template: str, *, port: int, data_dir: Path, **values: object) -> str:
    return template.format(
        port=port,
        data_dir=data_dir,
        user=pwd.getpwuid(os.geteuid()).pw_name,
        log_dest="stderr",
        **values,
    )


def render_config(*, port: int, data_dir: Path, acl_file: Path | None = None) -> str:
    """An open broker (tests, ``dormant dev --insecure-broker``): the template with its access block
    (dynamic security, the components' listener) replaced by one listener that lets anyone in, each
    client limited by ``acl_file`` if given. Logs go to stderr."""
    acl_line = (
        f"acl_file {acl_file}" if acl_file is not None else "# acl_file: none, every client may use any topic"
    )
    template, count = _ACCESS_BLOCK.subn(lambda _: f"allow_anonymous true\n{acl_line}\n", config_template())
    if count != 1:
        raise RuntimeError("the Mosquitto template no longer has one '# >>> access' block")
    opened = "# OPEN: this rendering lets anonymous clients in (a test broker or --insecure-broker).\n"
    return opened + _fill(template, port=port, data_dir=data_dir)


def _tls_lines(tls: TlsFiles | None, *, mutual: bool = False) -> str:
    if tls is None:
        return "# no TLS"
    lines = f"certfile {tls.server_cert}\nkeyfile {tls.server_key}\ntls_version tlsv1.2"
    if mutual:
        # Mutual TLS: a client must present a certificate the mesh CA signed, and log in as well.
        lines += f"\ncafile {tls.ca_cert}\nrequire_certificate true"
    return lines


def render_secured_config(
    *,
    port: int,
    component_port: int,
    data_dir: Path,
    dynsec_file: Path,
    tls: TlsFiles | None = None,
    mutual_tls: bool = False,
) -> str:
    """Dormant's configuration as shipped: the dynamic-security plugin, no anonymous clients, and a
    second listener for components (see the module docstring); with ``tls``, both listeners speak
    TLS 1.2 or later only, with that server certificate; with ``mutual_tls`` the components' listener
    also requires a client certificate signed by ``tls``'s CA."""
    return _fill(
        config_template(),
        port=port,
        data_dir=data_dir,
        component_port=component_port,
        dynsec_plugin=find_dynsec_plugin(),
        dynsec_file=dynsec_file,
        tls_lines=_tls_lines(tls),
        component_tls_lines=_tls_lines(tls, mutual=mutual_tls),
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
        security: SecurityPlan | None = None,
        component_port: int | None = None,
        tls: bool = False,
        mutual_tls: bool = False,
    ) -> None:
        super().__init__()
        if security is not None and acl_file is not None:
            raise ValueError("a secured broker takes its ACLs from the security plan, not an acl_file")
        if tls and security is None:
            raise ValueError("TLS is an option of the secured broker: pass a security plan too")
        if mutual_tls and not tls:
            raise ValueError("mutual TLS needs TLS: pass tls=True too")
        self.tls = tls
        self.mutual_tls = mutual_tls
        """Components must present a client certificate signed by the mesh CA (``client_certificate``
        issues one per account)."""
        self.tls_files: TlsFiles | None = None
        """The CA (``ca_cert``, for clients to trust) and server certificate, once started with TLS."""
        self._auto_port = port is None
        self.port = port if port is not None else free_port()
        self.security = security
        self._auto_component_port = component_port is None and security is not None
        self._component_port = component_port or (free_port() if security is not None else 0)
        self.data_dir = Path(data_dir).absolute()
        self.acl_file = Path(acl_file).absolute() if acl_file is not None else None
        self.log_file = Path(log_file).absolute() if log_file is not None else self.data_dir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def component_port(self) -> int:
        """The components' listener when secured; the one listener otherwise."""
        return self._component_port if self.security is not None else self.port

    def url_for(self, account: BrokerAccount) -> str:
        """The broker URL, with credentials, that ``account`` connects with: callers on ``port``,
        components on ``component_port``. Over TLS, clients find the CA (and a component its client
        certificate, ``client_certificate``) in their own settings: ``$DORMANT_BROKER_CA_FILE`` and the
        like, or the URL's query (``dormant.config.with_tls_files``)."""
        port = self.port if account.kind == "caller" else self.component_port
        return account.url(self.host, port, tls=self.tls)

    def client_certificate(self, account: BrokerAccount) -> tuple[Path, Path] | None:
        """The client certificate and key ``account`` presents on a mutual-TLS components' listener
        (made on first use by the mesh CA, kept beside it); None where none is asked for."""
        if not self.mutual_tls or account.kind == "caller":
            return None
        if self.tls_files is None:
            raise RuntimeError("the broker's TLS files exist once it has started")
        directory = self.tls_files.ca_cert.parent / "clients"
        cert_file, key_file = directory / f"{account.username}.pem", directory / f"{account.username}.key"
        if cert_file.exists() and key_file.exists():
            return cert_file, key_file
        return issue_client_certificate(self.tls_files, account.username)

    @property
    def config_file(self) -> Path:
        return self.data_dir / "mosquitto.conf"

    async def start(self) -> None:
        """Start the broker and wait until its port accepts connections."""
        if self.running:
            return
        executable = find_mosquitto()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 3 if self._auto_port or self._auto_component_port else 1
        for attempt in range(attempts):
            self.config_file.write_text(self._config(), encoding="utf-8")
            child = ChildProcess(
                [executable, "-c", str(self.config_file)], name="mosquitto", log_file=self.log_file
            )
            child.spawn()
            self._child = child
            try:
                await wait_until(self._accepts, within=self.start_timeout, failed=self._failed)
                self._auto_port = self._auto_component_port = False  # restarts keep the ports
                return
            except (RuntimeError, TimeoutError) as exc:
                child.kill()
                port_taken = "Address already in use" in child.log_tail()
                if port_taken and attempt + 1 < attempts:
                    if self._auto_port:
                        self.port = free_port()
                    if self._auto_component_port:
                        self._component_port = free_port()
                    continue
                raise RuntimeError(
                    f"mosquitto did not start on port {self.port}: {exc}\n{child.log_tail()}"
                ) from exc

    def _config(self) -> str:
        if self.security is None:
            return render_config(port=self.port, data_dir=self.data_dir, acl_file=self.acl_file)
        # Written at every start: the plan is the truth. Accounts added at run time through
        # $CONTROL/dynamic-security (Mosquitto saves them into this file) do not survive a restart
        # unless they are added to the plan too.
        dynsec_file, _ = self.security.write(self.data_dir)
        if self.tls and self.tls_files is None:  # one CA per broker: restarts keep the certificates
            self.tls_files = make_tls_files(self.data_dir / "tls", keep_ca_key=self.mutual_tls)
        return render_secured_config(
            port=self.port,
            component_port=self._component_port,
            data_dir=self.data_dir,
            dynsec_file=dynsec_file,
            tls=self.tls_files,
            mutual_tls=self.mutual_tls,
        )

    def _accepts(self) -> bool:
        return port_accepts(self.port) and port_accepts(self.component_port)

    def _failed(self) -> str | None:
        child = self._child
        if child is not None and not child.running:
            return f"mosquitto exited with status {child.returncode}"
        return None
