"""Throwaway Postgres and EMQX containers for Dormant, for users with Docker (testcontainers).

``start_postgres()`` and ``start_emqx()`` run the containers and return what Dormant's processes need;
``postgres_container`` and ``emqx_container`` are pytest fixtures over them that skip, with the reason,
where Docker cannot be reached (``pytest -p dormant_containers`` with this directory on the path).
Nothing in Dormant's own suite needs them. ``python dormant_containers.py`` starts both and prints
``export`` lines until interrupted.

The EMQX container gets Dormant's broker settings (README.md beside this file) through EMQX's
``EMQX_*`` environment overrides: the rules of ``acl.conf``, the components' accounts in the built-in
database (a bootstrap file), ``round_robin_per_group`` shared subscriptions and the session settings
of the components' zone, on plain TCP. Needs ``pip install 'dormant[containers]'`` (``testcontainers``).
"""

from __future__ import annotations

import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
POSTGRES_IMAGE = "postgres:17-alpine"
EMQX_IMAGE = "emqx/emqx:5.8.9"
EMQX_ETC = "/opt/emqx/etc"
ACCOUNTS = {
    "runtimes": "dormant.runtimes",
    "controller": "dormant.controller",
    "gateway": "dormant.gateway",
    "caller": "developer",
}
"""Account kind -> user name, as the Helm chart names them; ``caller`` is a caller with a password (in
production callers log in with OIDC tokens, which a throwaway broker does without)."""
START_TIMEOUT_S = 120.0


def docker_unavailable() -> str | None:
    """Why containers cannot run here (None: they can)."""
    try:
        import docker  # type: ignore[import-untyped]  # lazy: optional dependency (with testcontainers)
        import testcontainers  # noqa: F401  # lazy: optional dependency
    except ImportError:
        return "testcontainers is not installed (pip install 'dormant[containers]')"
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        return f"Docker is not reachable: {type(exc).__name__}"
    return None


def accounts_csv(passwords: Mapping[str, str]) -> str:
    """EMQX's built-in database bootstrap file (``bootstrap_type = plain``) for ``passwords`` by kind."""
    rows = ["user_id,password,is_superuser"]
    rows += [f"{ACCOUNTS[kind]},{password},false" for kind, password in passwords.items()]
    return "\n".join(rows) + "\n"


def emqx_environment() -> dict[str, str]:
    """``EMQX_*`` overrides: emqx.conf's authorization, authentication by the built-in database,
    shared subscriptions and session settings, for every zone (the container has one listener)."""
    return {
        "EMQX_LISTENERS__TCP__DEFAULT__BIND": "0.0.0.0:1883",
        "EMQX_MQTT__SHARED_SUBSCRIPTION_STRATEGY": "round_robin_per_group",
        "EMQX_MQTT__MAX_INFLIGHT": "256",
        "EMQX_MQTT__MAX_MQUEUE_LEN": "10000",
        "EMQX_MQTT__RETRY_INTERVAL": "infinity",
        "EMQX_MQTT__MAX_PACKET_SIZE": "16MB",
        "EMQX_MQTT__CLIENT_ATTRS_INIT": (
            "[{expression = \"nth(3, tokens(username, '.'))\", set_as_attr = service}]"
        ),
        "EMQX_AUTHENTICATION__1__MECHANISM": "password_based",
        "EMQX_AUTHENTICATION__1__BACKEND": "built_in_database",
        "EMQX_AUTHENTICATION__1__USER_ID_TYPE": "username",
        "EMQX_AUTHENTICATION__1__BOOTSTRAP_FILE": f"{EMQX_ETC}/dormant-accounts.csv",
        "EMQX_AUTHENTICATION__1__BOOTSTRAP_TYPE": "plain",
        "EMQX_AUTHORIZATION__NO_MATCH": "deny",
        "EMQX_AUTHORIZATION__DENY_ACTION": "ignore",
        "EMQX_AUTHORIZATION__SOURCES__1__TYPE": "file",
        "EMQX_AUTHORIZATION__SOURCES__1__ENABLE": "true",
        "EMQX_AUTHORIZATION__SOURCES__1__PATH": f"{EMQX_ETC}/dormant-acl.conf",
    }


@dataclass
class EmqxBroker:
    """A running EMQX container: where it listens and the components' passwords."""

    host: str
    port: int
    passwords: dict[str, str] = field(repr=False)
    container: Any = field(default=None, repr=False)

    def url(self, kind: str) -> str:
        """The broker URL of the account ``kind`` (runtimes, controller, gateway, caller)."""
        return f"mqtt://{ACCOUNTS[kind]}:{self.passwords[kind]}@{self.host}:{self.port}"

    def stop(self) -> None:
        if self.container is not None:
            self.container.stop()


def start_emqx(image: str = EMQX_IMAGE) -> EmqxBroker:
    """Start EMQX with Dormant's rules and accounts (fresh random passwords); wait until it accepts."""
    from testcontainers.core.container import DockerContainer  # lazy: optional dependency

    passwords = {kind: secrets.token_hex(20) for kind in ACCOUNTS}
    etc = Path(tempfile.mkdtemp(prefix="dormant-emqx-"))
    (etc / "dormant-acl.conf").write_text((HERE / "acl.conf").read_text())
    (etc / "dormant-accounts.csv").write_text(accounts_csv(passwords))
    for path in etc.iterdir():
        path.chmod(0o644)  # EMQX runs as its own user in the container
    container = DockerContainer(image).with_exposed_ports(1883)
    for name, value in emqx_environment().items():
        container = container.with_env(name, value)
    container = container.with_volume_mapping(str(etc / "dormant-acl.conf"), f"{EMQX_ETC}/dormant-acl.conf")
    container = container.with_volume_mapping(
        str(etc / "dormant-accounts.csv"), f"{EMQX_ETC}/dormant-accounts.csv"
    )
    container.start()
    try:
        broker = EmqxBroker(
            container.get_container_host_ip(), int(container.get_exposed_port(1883)), passwords, container
        )
        _wait_for_login(broker)
    except BaseException:
        container.stop()
        raise
    finally:
        shutil.rmtree(etc, ignore_errors=True)
    return broker


def _wait_for_login(broker: EmqxBroker) -> None:
    """Until the controller's account can log in (EMQX has loaded the accounts), or the timeout."""
    import paho.mqtt.client as mqtt  # lazy: only here
    from paho.mqtt.enums import CallbackAPIVersion

    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no attempt"
    while time.monotonic() < deadline:
        client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        client.username_pw_set(ACCOUNTS["controller"], broker.passwords["controller"])
        try:
            client.connect(broker.host, broker.port, keepalive=10)
            client.disconnect()
            return
        except Exception as exc:
            last = type(exc).__name__
        time.sleep(1.0)
    raise TimeoutError(f"EMQX did not accept a login within {START_TIMEOUT_S:g} s ({last})")


def start_postgres(image: str = POSTGRES_IMAGE) -> tuple[Any, str]:
    """Start Postgres; (the container, a ``postgresql://`` URL for DORMANT_CATALOG_URL)."""
    try:  # lazy: optional dependency; testcontainers 4.14+ keeps it in community
        from testcontainers.community.postgres import PostgresContainer
    except ImportError:
        from testcontainers.postgres import PostgresContainer

    container = PostgresContainer(
        image, username="dormant", password=secrets.token_hex(16), dbname="dormant", driver=None
    )
    container.start()
    url = container.get_connection_url(driver=None)
    return container, url


# ---------------------------------------------------------------------- pytest fixtures

try:
    import pytest
except ImportError:  # pragma: no cover - only the fixtures need pytest
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture(scope="session")
    def postgres_container() -> Iterator[str]:
        """A throwaway Postgres: its URL (skips where Docker cannot be reached)."""
        reason = docker_unavailable()
        if reason:
            pytest.skip(reason)
        container, url = start_postgres()
        try:
            yield url
        finally:
            container.stop()

    @pytest.fixture(scope="session")
    def emqx_container() -> Iterator[EmqxBroker]:
        """A throwaway EMQX with Dormant's rules and accounts (skips where Docker cannot be reached)."""
        reason = docker_unavailable()
        if reason:
            pytest.skip(reason)
        broker = start_emqx()
        try:
            yield broker
        finally:
            broker.stop()


def main() -> int:
    reason = docker_unavailable()
    if reason:
        print(f"dormant_containers: {reason}", file=sys.stderr)
        return 2
    pg, catalog_url = start_postgres()
    broker = start_emqx()
    try:
        print(f"export DORMANT_CATALOG_URL='{catalog_url}'")
        for kind in ACCOUNTS:
            print(f"export DORMANT_BROKER_URL_{kind.upper()}='{broker.url(kind)}'")
        print(f"export DORMANT_BROKER_URL='{broker.url('runtimes')}'")
        print("# Ctrl-C stops both containers", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()
        pg.stop()


if __name__ == "__main__":
    raise SystemExit(main())
