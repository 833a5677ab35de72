"""The dev mesh's broker accounts: who ``dormant dev``'s processes connect as, and where that is kept.

``dormant dev`` runs its private Mosquitto secured (``dormant_local.broker_security``): no anonymous
clients, and one account per kind of process:

* ``developer`` (a caller, the user name of the dev token's subject) for the developer's own tools:
  ``dormant call``, ``dormant.Client()`` and ``mosquitto_rr`` on the callers' listener, where the client
  id is forced to the user name. One connection at a time: a second one takes the first one's session
  over (``dormant.client`` explains what the older client then does).
* ``dormant.runtimes``: every runtime of the mesh, whatever service it serves (a dev-mesh shortcut:
  pods get their broker URL before they know which service they will load, and a service deployed
  later needs no new account); a production mesh gives each service an account of its own.
* ``dormant.controller``, ``dormant.gateway``: the rollout controller and the gateway, each its own.
* ``dormant.admin``: reads everything; ``dormant status`` reads ``mesh/stats`` with it.

The passwords stay in ``STATE/mosquitto/broker-credentials.json`` (mode 0600), and a restart on the same
state directory keeps them (a shell that sourced ``env.sh`` keeps working). The developer's URL, with
its password, is in ``mesh.json`` and ``env.sh`` (both 0600), the admin's in ``mesh.json``; neither is
ever printed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dormant.config import parse_broker_url, redact_url, with_tls_files
from dormant_local.broker_security import (
    ALL_SERVICES_RUNTIME,
    COMPONENT_PREFIX,
    CREDENTIALS_FILE,
    BrokerAccount,
    BrokerAccountError,
    SecurityPlan,
    write_private,
)

if TYPE_CHECKING:
    from dormant_local.broker import MosquittoProcess

DEVELOPER = "developer"
"""The developer's broker user name: the subject of the dev mesh's developer token."""
CONTROLLER = f"{COMPONENT_PREFIX}controller"
GATEWAY = f"{COMPONENT_PREFIX}gateway"
ADMIN = f"{COMPONENT_PREFIX}admin"

INSECURE_WARNING = (
    "WARNING: --insecure-broker: the private broker lets anyone on this machine connect without a "
    "password, read every caller's replies, answer in place of a service and publish route tables. "
    "Use it only to rule the broker's accounts out while debugging."
)


def dev_broker_plan(directory: Path) -> SecurityPlan:
    """The dev mesh's accounts: those kept in ``directory``'s credentials file (a restart keeps the
    passwords), with any missing one added; a fresh plan when there is no readable file."""
    try:
        plan = SecurityPlan.load(directory / CREDENTIALS_FILE)
    except (OSError, ValueError, KeyError, TypeError, BrokerAccountError):
        plan = SecurityPlan()
    known = {account.username for account in plan.accounts}
    if CONTROLLER not in known:
        plan.add_controller()
    if GATEWAY not in known:
        plan.add_gateway()
    if ADMIN not in known:
        plan.add_admin()
    if ALL_SERVICES_RUNTIME not in known:
        plan.add_all_services_runtime()
    if DEVELOPER not in known:
        plan.add_caller(DEVELOPER)
    return plan


@dataclass(frozen=True, slots=True)
class BrokerUrls:
    """The broker URL each of the dev mesh's processes connects with (passwords never in the repr)."""

    developer: str = field(repr=False)
    """``dormant call``, ``dormant.Client()``, ``mosquitto_rr``: ``mesh.json``'s ``brokerUrl``."""
    runtime: str = field(repr=False)
    controller: str = field(repr=False)
    gateway: str = field(repr=False)
    """The gateway's, and ``dormant dev``'s own readiness probe's (a caller on the components' listener)."""
    admin: str = field(repr=False)

    @classmethod
    def same(cls, url: str) -> BrokerUrls:
        """Every process on one URL: a broker ``dormant dev`` did not start (``--broker-url``)."""
        return cls(url, url, url, url, url)

    @classmethod
    def of(cls, broker: MosquittoProcess) -> BrokerUrls:
        """Each account's URL on ``broker`` (one URL for all when it runs open)."""
        plan = broker.security
        if plan is None:
            return cls.same(broker.url)
        return cls(
            developer=_url(broker, plan.account(DEVELOPER)),
            runtime=_url(broker, plan.account(ALL_SERVICES_RUNTIME)),
            controller=_url(broker, plan.account(CONTROLLER)),
            gateway=_url(broker, plan.account(GATEWAY)),
            admin=_url(broker, plan.account(ADMIN)),
        )

    def __str__(self) -> str:
        return redact_url(self.developer)

    def credential_exports(self) -> str:
        """``env.sh`` lines with the developer's user name and password, for MQTT tools that are not
        Dormant's (``mosquitto_rr -u "$DORMANT_BROKER_USER" -P "$DORMANT_BROKER_PASSWORD"``); Dormant
        itself reads them from ``DORMANT_BROKER_URL``. Empty for a broker without a login."""
        address = parse_broker_url(self.developer, environ={})
        if address.username is None or address.password is None:
            return ""
        return (
            "# For MQTT tools that are not Dormant's (mosquitto_rr -u/-P); Dormant uses DORMANT_BROKER_URL\n"
            f"export DORMANT_BROKER_USER={_shell_word(address.username)}\n"
            f"export DORMANT_BROKER_PASSWORD={_shell_word(address.password)}\n"
        )


def _url(broker: MosquittoProcess, account: BrokerAccount) -> str:
    """``account``'s URL on ``broker``; over TLS it names the mesh CA and, on a mutual-TLS components'
    listener, the account's client certificate: one self-contained string for each process."""
    url = broker.url_for(account)
    if broker.tls_files is None:
        return url
    certificate = broker.client_certificate(account)
    return with_tls_files(
        url,
        ca_file=str(broker.tls_files.ca_cert),
        cert_file=None if certificate is None else str(certificate[0]),
        key_file=None if certificate is None else str(certificate[1]),
    )


def _shell_word(value: str) -> str:
    """``value`` as one shell word (JSON quoting is not shell quoting: single quotes, escaped)."""
    return "'" + value.replace("'", "'\\''") + "'"


__all__ = ["INSECURE_WARNING", "BrokerUrls", "dev_broker_plan", "write_private"]
