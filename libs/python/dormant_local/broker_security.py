"""Who may connect to the broker, and what each account may publish, subscribe to and receive.

One table, ``RULES``, says what each kind of account may do on which topic; the Mosquitto
dynamic-security file (``SecurityPlan.dynsec_config``) and the EMQX ``acl.conf`` in ``deploy/emqx/``
both express it (a unit test checks that every rule has its EMQX counterpart).

Kinds of account:

* ``caller`` (a person or a tool): publishes requests on ``service/#`` and wake requests on
  ``mesh/wake/#`` (a call that reached nobody asks the controller to scale the service up from zero),
  reads the route tables and service states, and subscribes to and receives only its own inbox
  ``reply/{username}/#``. It may also publish into its own inbox (the SDK's retained-load barrier
  does). A caller's client id is its user name: the callers' listener rewrites it
  (``use_username_as_clientid``) and the account is pinned to it, so a caller can never present a
  runtime's client id (those all start with ``dormant-``, a prefix no caller name may have).
* ``runtime`` (one account per service): subscribes to that service's shared topics only
  (``$share/{group}/service/{svc}/#``) and its live configuration (``mesh/config/{svc}``), answers on
  ``reply/#``, publishes its own ``mesh/stats/{svc}/#`` (and, with the same account, its pod's sidecar
  the service's log records on ``mesh/logs/{svc}/#``), sends and receives events and binary transfers
  (``events/#``, ``binary/#``: only runtimes publish there, so the subject an event carries is a
  runtime's word), and may call other services as a caller does (its inbox is
  ``reply/{its username}/#``). A dev mesh, whose pods serve whatever is deployed next, has one runtime
  account for every service instead (``SecurityPlan.add_all_services_runtime``: ``{svc}`` is ``+``).
* ``controller``: alone publishes ``mesh/routes/#``, ``mesh/services/#``, ``mesh/config/#`` and
  ``mesh/events/#``; alone reads ``mesh/wake/#``, and reads ``mesh/stats/#`` (as the gateway and the
  admin, who reads everything, do) and ``mesh/config/#``; a caller besides.
* ``gateway``: a caller with an account of its own (on the components' listener, so several gateway
  processes may share it with different client ids) that also reads ``mesh/stats/#``, for the live
  figures of its web console.
* ``admin`` (operators, ``dormant status``, tests): reads everything, publishes nothing but dynamic
  security commands on ``$CONTROL/dynamic-security/#``.

An account added after the broker started reaches it through ``SecurityPlan.control_commands``
(published as the admin on ``$CONTROL/dynamic-security/v1``). ``make_tls_files`` makes a private CA
and a server certificate for a TLS broker.

Nothing is allowed that a rule does not allow: the dynsec default ACL access denies publishing,
receiving and subscribing. Anonymous clients are refused by the broker configuration. Passwords are
random (``secrets.token_urlsafe``), stored PBKDF2-SHA512 hashed in the dynsec file and in clear only in
the credentials file (mode 0600); no repr, log line or error message holds one.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

Kind = Literal["caller", "runtime", "controller", "gateway", "admin"]
Action = Literal["publish", "subscribe"]

COMPONENT_PREFIX = "dormant."
"""Every component account's user name starts with this; no caller's may start with ``dormant``."""
RUNTIME_CLIENT_ID_PREFIX = "dormant-"
"""Runtime, controller, gateway and SDK client ids start with this (``dormant-{svc}-v{N}-s{slot}-g{gen}``
...)."""

DYNSEC_FILE = "dynamic-security.json"
CREDENTIALS_FILE = "broker-credentials.json"

PBKDF2_ITERATIONS = 101
"""What ``mosquitto_ctrl dynsec`` writes (Mosquitto 2.0): PBKDF2-SHA512, 12-byte salt, 101 rounds."""
SALT_BYTES = 12

_SERVICE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_CALLER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


@dataclass(frozen=True, slots=True)
class TopicRule:
    """One thing an account kind may do. ``topic`` may hold ``{service}`` (the runtime's service) and
    ``{username}`` (the account's own user name)."""

    kind: Kind
    action: Action
    topic: str
    why: str
    emqx: bool = True
    """False for Mosquitto-only rules (dynamic-security commands; EMQX manages accounts by REST API)."""

    @property
    def receive_topic(self) -> str:
        """For a subscribe rule: the topics its messages arrive on (a shared filter without
        ``$share/{group}/``). Mosquitto checks the SUBSCRIBE against ``topic`` as written (the
        ``$share`` prefix included) and each delivery against this one; EMQX checks both against
        this one (it strips ``$share/{group}/`` before authorizing)."""
        if self.topic.startswith("$share/"):
            return self.topic.split("/", 2)[2]
        return self.topic

    def render(self, *, username: str, service: str | None = None) -> TopicRule:
        topic = self.topic.replace("{username}", username)
        if "{service}" in topic:
            if service is None:
                raise ValueError(f"the rule {self.topic!r} needs a service")
            topic = topic.replace("{service}", service)
        return TopicRule(self.kind, self.action, topic, self.why, self.emqx)


RULES: tuple[TopicRule, ...] = (
    TopicRule("caller", "publish", "service/#", "send requests to any service"),
    TopicRule("caller", "subscribe", "reply/{username}/#", "answers, only into the caller's own inbox"),
    TopicRule("caller", "publish", "reply/{username}/#", "the SDK's barrier message into its own inbox"),
    TopicRule("caller", "subscribe", "mesh/routes/#", "route tables, for the weighted version pick"),
    TopicRule("caller", "subscribe", "mesh/services/#", "service states (and the mesh/services marker)"),
    TopicRule("caller", "publish", "mesh/wake/#", "wake requests for a service scaled to zero"),
    TopicRule(
        "runtime", "subscribe", "$share/+/service/{service}/#", "its own service's shared request topics"
    ),
    TopicRule("runtime", "subscribe", "mesh/config/{service}", "its own service's live configuration"),
    TopicRule("runtime", "subscribe", "mesh/config", "the controller's marker: configurations are published"),
    TopicRule("runtime", "publish", "reply/#", "answers into any caller's inbox"),
    TopicRule("runtime", "publish", "mesh/stats/{service}/#", "its own service's one-second windows"),
    TopicRule(
        "runtime", "publish", "mesh/logs/{service}/#", "its own service's log records (the pod's sidecar)"
    ),
    TopicRule("runtime", "publish", "events/#", "events its handlers send (ctx.messaging)"),
    TopicRule("runtime", "subscribe", "events/#", "events its handlers receive"),
    TopicRule("runtime", "publish", "binary/#", "binary transfers' chunks its handlers send"),
    TopicRule("runtime", "subscribe", "binary/#", "binary transfers its handlers receive"),
    TopicRule("controller", "publish", "mesh/routes/#", "route tables, retained"),
    TopicRule("controller", "publish", "mesh/services/#", "service states and the marker, retained"),
    TopicRule("controller", "publish", "mesh/events/#", "deployment events"),
    TopicRule("controller", "publish", "mesh/config/#", "live configurations, retained"),
    TopicRule("controller", "subscribe", "mesh/config/#", "which live configurations are retained"),
    TopicRule("controller", "subscribe", "mesh/stats/#", "every runtime's windows, for rollouts"),
    TopicRule("controller", "subscribe", "mesh/wake/#", "wake requests, for the autoscaler"),
    TopicRule("gateway", "subscribe", "mesh/stats/#", "every runtime's windows, for the web console"),
    TopicRule("admin", "subscribe", "#", "operators read everything (not $-topics)"),
    TopicRule("admin", "publish", "$CONTROL/dynamic-security/#", "account management", emqx=False),
    TopicRule("admin", "subscribe", "$CONTROL/dynamic-security/#", "its answers", emqx=False),
)

KIND_RULES: Mapping[Kind, tuple[Kind, ...]] = {
    "caller": ("caller",),
    "gateway": ("gateway", "caller"),
    "runtime": ("runtime", "caller"),
    "controller": ("controller", "caller"),
    "admin": ("admin",),
}
"""Which rule sets each kind of account holds (a runtime, the controller and the gateway call too)."""


def rules_for(kind: Kind) -> list[TopicRule]:
    """The rules an account of ``kind`` holds, still as templates."""
    return [rule for part in KIND_RULES[kind] for rule in RULES if rule.kind == part]


# --------------------------------------------------------------------------- accounts


class BrokerAccountError(ValueError):
    """A broker account that cannot be made or found: a bad name, a duplicate, an unknown user.

    (``dormant_local`` imports no other Dormant package, so this is not a ``dormant.errors`` type;
    ``details`` says which name, never a password.)"""

    def __init__(self, message: str, details: dict[str, str]) -> None:
        super().__init__(f"{message}: {details}")
        self.details = details


@dataclass(frozen=True, slots=True)
class BrokerAccount:
    """One broker login. ``pinned_client_id``: the only client id it may connect with (callers)."""

    username: str
    password: str = field(repr=False)
    kind: Kind
    service: str | None = None

    @property
    def pinned_client_id(self) -> str | None:
        return self.username if self.kind == "caller" else None

    @property
    def inbox(self) -> str:
        """The topic prefix this account's answers come back under: ``reply/{username}``."""
        return f"reply/{self.username}"

    def url(self, host: str, port: int, *, tls: bool = False) -> str:
        """``mqtt://user:password@host:port`` (``mqtts://`` with ``tls``), user and password quoted."""
        scheme = "mqtts" if tls else "mqtt"
        return f"{scheme}://{quote(self.username, safe='')}:{quote(self.password, safe='')}@{host}:{port}"

    def rules(self) -> list[TopicRule]:
        """This account's rules, with its user name and service filled in."""
        return [rule.render(username=self.username, service=self.service) for rule in rules_for(self.kind)]


def runtime_username(service: str) -> str:
    return f"{COMPONENT_PREFIX}runtime.{service}"


ALL_SERVICES = "+"
"""The ``service`` of a runtime account that may serve every service (a dev mesh's)."""
ALL_SERVICES_RUNTIME = f"{COMPONENT_PREFIX}runtimes"
"""The user name of that account (no service's runtime account can have it: those end ``.{svc}``)."""


def check_caller_name(username: str) -> None:
    """Raise ``BrokerAccountError`` for a caller name that could collide with a component or break a topic."""
    if not _CALLER_NAME.match(username):
        raise BrokerAccountError(
            "a caller's broker user name is 1 to 128 letters, digits, '_', '.', '@' or '-', starting "
            "with a letter or digit",
            {"username": username[:128]},
        )
    if username.lower().startswith("dormant"):
        raise BrokerAccountError(
            "user names starting with 'dormant' are reserved for Dormant's components",
            {"username": username},
        )


def check_service_name(service: str) -> None:
    if not _SERVICE_NAME.match(service):
        raise BrokerAccountError(
            "a service name is lowercase letters, digits and dashes, at most 64 characters",
            {"service": service[:64]},
        )


def new_password() -> str:
    return secrets.token_urlsafe(24)


def hash_password(password: str, *, salt: bytes | None = None) -> dict[str, Any]:
    """The dynsec client fields for ``password``: base64 PBKDF2-SHA512 hash, base64 salt, iterations."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return {
        "password": base64.b64encode(digest).decode(),
        "salt": base64.b64encode(salt).decode(),
        "iterations": PBKDF2_ITERATIONS,
    }


# --------------------------------------------------------------------------- the plan


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": True, "priority": 0}


def _dynsec_acls(rules: Iterable[TopicRule]) -> list[dict[str, Any]]:
    acls: list[dict[str, Any]] = []
    for rule in rules:
        if rule.action == "publish":
            acls.append(_acl("publishClientSend", rule.topic))
        else:
            acls.append(_acl("subscribePattern", rule.topic))
            acls.append(_acl("publishClientReceive", rule.receive_topic))
    return acls


def kind_role(kind: Kind, service: str | None = None) -> str:
    """The dynsec role holding a kind's rules that do not name the user: ``caller``, ``runtime:{svc}``..."""
    return f"runtime:{service}" if kind == "runtime" else kind


def inbox_role(username: str) -> str:
    """The dynsec role holding one account's ``{username}`` rules (dynsec 2.0 has no %u patterns)."""
    return f"inbox:{username}"


CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
CONTROL_RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"


def account_dynsec_roles(account: BrokerAccount) -> dict[str, list[dict[str, Any]]]:
    """Role name -> ACLs for ``account``: its kind's role (shared by every account of the kind, per
    service for runtimes) and, when it has ``{username}`` rules, its own inbox role."""
    rules = rules_for(account.kind)
    shared = [r.render(username="", service=account.service) for r in rules if "{username}" not in r.topic]
    personal = [r.render(username=account.username) for r in rules if "{username}" in r.topic]
    roles = {kind_role(account.kind, account.service): _dynsec_acls(shared)}
    if personal:
        roles[inbox_role(account.username)] = _dynsec_acls(personal)
    return roles


class SecurityPlan:
    """The broker's accounts; renders the Mosquitto dynamic-security file and the credentials file."""

    def __init__(self) -> None:
        self._accounts: dict[str, BrokerAccount] = {}

    @classmethod
    def for_mesh(cls, services: Iterable[str] = (), callers: Iterable[str] = ()) -> SecurityPlan:
        """A controller, a gateway, an admin, a runtime account per service and the named callers."""
        plan = cls()
        plan.add_controller()
        plan.add_gateway()
        plan.add_admin()
        for service in services:
            plan.add_runtime(service)
        for caller in callers:
            plan.add_caller(caller)
        return plan

    def __repr__(self) -> str:
        return f"SecurityPlan({sorted(self._accounts)})"

    @property
    def accounts(self) -> list[BrokerAccount]:
        return list(self._accounts.values())

    def account(self, username: str) -> BrokerAccount:
        try:
            return self._accounts[username]
        except KeyError:
            raise BrokerAccountError("no such broker account", {"username": username}) from None

    def runtime(self, service: str) -> BrokerAccount:
        return self.account(runtime_username(service))

    def _add(self, account: BrokerAccount) -> BrokerAccount:
        if account.username in self._accounts:
            raise BrokerAccountError("the broker account exists already", {"username": account.username})
        self._accounts[account.username] = account
        return account

    def add_caller(self, username: str, password: str | None = None) -> BrokerAccount:
        check_caller_name(username)
        return self._add(BrokerAccount(username, password or new_password(), "caller"))

    def add_runtime(self, service: str, password: str | None = None) -> BrokerAccount:
        check_service_name(service)
        return self._add(
            BrokerAccount(runtime_username(service), password or new_password(), "runtime", service)
        )

    def add_all_services_runtime(self, password: str | None = None) -> BrokerAccount:
        """One runtime account (``dormant.runtimes``) with a runtime's rights for every service: its
        rules name ``+`` where a service's account names the service. For a dev mesh, whose pods load
        whatever service is deployed next and get their broker URL before they know which; a
        production mesh gives each service its own account (``add_runtime``)."""
        return self._add(
            BrokerAccount(ALL_SERVICES_RUNTIME, password or new_password(), "runtime", ALL_SERVICES)
        )

    def add_controller(self, password: str | None = None) -> BrokerAccount:
        return self._add(
            BrokerAccount(f"{COMPONENT_PREFIX}controller", password or new_password(), "controller")
        )

    def add_gateway(self, name: str = "gateway", password: str | None = None) -> BrokerAccount:
        if not re.fullmatch(r"[a-z0-9-]{1,64}", name):
            raise BrokerAccountError(
                "a gateway account name is lowercase letters, digits and dashes", {"name": name}
            )
        return self._add(BrokerAccount(f"{COMPONENT_PREFIX}{name}", password or new_password(), "gateway"))

    def add_admin(self, password: str | None = None) -> BrokerAccount:
        return self._add(BrokerAccount(f"{COMPONENT_PREFIX}admin", password or new_password(), "admin"))

    # ------------------------------------------------------------------ rendering

    def dynsec_config(self) -> dict[str, Any]:
        """The content of Mosquitto's ``dynamic-security.json``: clients, roles, default deny."""
        roles: dict[str, list[dict[str, Any]]] = {}
        clients: list[dict[str, Any]] = []
        for account in self._accounts.values():
            account_roles = account_dynsec_roles(account)
            for name, acls in account_roles.items():
                roles.setdefault(name, acls)
            client: dict[str, Any] = {
                "username": account.username,
                "textName": f"Dormant {account.kind}",
                **hash_password(account.password),
                "roles": [{"rolename": name, "priority": -1} for name in account_roles],
            }
            if account.pinned_client_id is not None:
                client["clientid"] = account.pinned_client_id
            clients.append(client)
        return {
            "defaultACLAccess": {
                "publishClientSend": False,
                "publishClientReceive": False,
                "subscribe": False,
                "unsubscribe": True,
            },
            "clients": clients,
            "groups": [],
            "roles": [{"rolename": name, "acls": acls} for name, acls in roles.items()],
        }

    def control_commands(self, account: BrokerAccount) -> dict[str, Any]:
        """The ``$CONTROL/dynamic-security/v1`` message that adds ``account`` (already in this plan) to
        a running broker: its roles (a role that exists already is answered with an error and left as
        it is) and the client. Publish it as the admin account; answers arrive on
        ``CONTROL_RESPONSE_TOPIC``. The message holds the password: never log it."""
        if self._accounts.get(account.username) is not account:
            raise BrokerAccountError("add the account to the plan first", {"username": account.username})
        account_roles = account_dynsec_roles(account)
        commands: list[dict[str, Any]] = [
            {"command": "createRole", "rolename": name, "acls": acls} for name, acls in account_roles.items()
        ]
        client: dict[str, Any] = {
            "command": "createClient",
            "username": account.username,
            "password": account.password,
            "textname": f"Dormant {account.kind}",
            "roles": [{"rolename": name, "priority": -1} for name in account_roles],
        }
        if account.pinned_client_id is not None:
            client["clientid"] = account.pinned_client_id
        commands.append(client)
        return {"commands": commands}

    def credentials(self) -> dict[str, dict[str, str]]:
        """User name -> {password, kind[, service]}: what the credentials file holds."""
        out: dict[str, dict[str, str]] = {}
        for account in self._accounts.values():
            entry = {"password": account.password, "kind": account.kind}
            if account.service is not None:
                entry["service"] = account.service
            out[account.username] = entry
        return out

    def write(self, directory: Path) -> tuple[Path, Path]:
        """Write ``dynamic-security.json`` and ``broker-credentials.json`` (both mode 0600) into
        ``directory``; return their paths."""
        directory.mkdir(parents=True, exist_ok=True)
        dynsec = directory / DYNSEC_FILE
        credentials = directory / CREDENTIALS_FILE
        write_private(dynsec, json.dumps(self.dynsec_config(), indent=1))
        write_private(credentials, json.dumps(self.credentials(), indent=1, sort_keys=True))
        return dynsec, credentials

    @classmethod
    def load(cls, credentials_file: Path) -> SecurityPlan:
        """The plan whose credentials file ``write`` produced (to hand accounts to components)."""
        plan = cls()
        entries = json.loads(credentials_file.read_text(encoding="utf-8"))
        for username, entry in entries.items():
            plan._add(BrokerAccount(username, entry["password"], _kind(entry["kind"]), entry.get("service")))
        return plan


def _kind(value: object) -> Kind:
    for kind in KIND_RULES:
        if value == kind:
            return kind
    raise BrokerAccountError("not a broker account kind", {"kind": str(value)[:40]})


# --------------------------------------------------------------------------- EMQX


EMQX_WHO: Mapping[Kind, str] = {
    "caller": '{username, {re, "^(?!dormant\\\\.admin$)"}}',
    "runtime": '{username, {re, "^dormant\\\\.runtime\\\\.[a-z0-9-]+$"}}',
    "controller": '{username, "dormant.controller"}',
    "gateway": '{username, "dormant.gateway"}',
    "admin": '{username, "dormant.admin"}',
}
"""Who holds each rule set in EMQX's ``acl.conf`` (Erlang terms): caller rules go to every account but
the admin (runtimes, the controller and gateways call too), as ``KIND_RULES`` says for Mosquitto."""


def emqx_topic(rule: TopicRule) -> str:
    """The rule's topic as EMQX authorizes it: ``$share/{group}/`` stripped (EMQX checks a shared
    subscription on its real topic), ``{username}`` and ``{service}`` as EMQX placeholders (the service
    is a client attribute that ``mqtt.client_attrs_init`` takes from a runtime's user name)."""
    topic = rule.receive_topic if rule.action == "subscribe" else rule.topic
    return topic.replace("{username}", "${username}").replace("{service}", "${client_attrs.service}")


def render_emqx_acl() -> str:
    """The content of ``deploy/emqx/acl.conf``: ``RULES`` as EMQX file-authorizer rules."""
    lines = [
        "%% Dormant's broker rules for EMQX's file authorizer. Generated from RULES in",
        "%% libs/python/dormant_local/broker_security.py by render_emqx_acl(); a unit test keeps them equal.",
        "%% See README.md in this directory for each rule.",
        "",
        "%% A user name holding a topic separator or wildcard could reach into another user's inbox.",
        '{deny, {username, {re, "[/+#]"}}, all, ["#"]}.',
        "",
    ]
    for kind in ("caller", "runtime", "controller", "gateway", "admin"):
        for action in ("publish", "subscribe"):
            rules = [r for r in RULES if r.kind == kind and r.action == action and r.emqx]
            if not rules:
                continue
            for rule in rules:
                lines.append(f"%% {kind} {action} {rule.topic}: {rule.why}")
            topics = ", ".join(f'"{emqx_topic(rule)}"' for rule in rules)
            lines.append(f"{{allow, {EMQX_WHO[kind]}, {action}, [{topics}]}}.")
            if kind == "runtime":  # a pool's one account for every service (add_all_services_runtime)
                pool = [r.render(username="{username}", service=ALL_SERVICES) for r in rules]
                topics = ", ".join(f'"{emqx_topic(rule)}"' for rule in pool)
                lines.append(f"%% {ALL_SERVICES_RUNTIME}: the same, for every service (a pool's pods)")
                lines.append(f'{{allow, {{username, "{ALL_SERVICES_RUNTIME}"}}, {action}, [{topics}]}}.')
            lines.append("")
    lines.append("%% Everything else is refused (and authorization.no_match = deny).")
    lines.append("{deny, all}.")
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only (created 0600, never wider for a moment)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its mode through O_TRUNC
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """A private CA and a server certificate it signed (for 127.0.0.1 and localhost), as PEM files.

    ``ca_key`` is kept (mode 0600) only when the CA must sign more: client certificates for mutual TLS
    (``issue_client_certificate``)."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    ca_key: Path | None = None


def make_tls_files(directory: Path, *, days: int = 30, keep_ca_key: bool = False) -> TlsFiles:
    """Make a CA and a server certificate for 127.0.0.1/localhost in ``directory`` (keys mode 0600).

    Without ``keep_ca_key`` the CA's key is not kept: the CA signs the one server certificate and
    nothing else. Clients trust ``ca_cert`` (``mosquitto_rr --cafile``,
    ``ssl.create_default_context(cafile=...)``)."""
    # Imported here: cryptography costs tens of milliseconds and only a TLS broker needs it.
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Dormant local mesh CA")])
    key_usage = x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )
    ca_cert = _signed(
        _builder(ca_name, ca_key.public_key(), days)
        .issuer_name(ca_name)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage, critical=True),
        ca_key,
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    server_cert = _signed(
        _builder(server_name, server_key.public_key(), days)
        .issuer_name(ca_name)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False),
        ca_key,
    )
    files = TlsFiles(
        directory / "ca.pem",
        directory / "server.pem",
        directory / "server.key",
        directory / "ca.key" if keep_ca_key else None,
    )
    files.ca_cert.write_bytes(_pem(ca_cert))
    files.server_cert.write_bytes(_pem(server_cert))
    write_private(files.server_key, _key_pem(server_key))
    if files.ca_key is not None:
        write_private(files.ca_key, _key_pem(ca_key))
    return files


def issue_client_certificate(files: TlsFiles, common_name: str, *, days: int = 30) -> tuple[Path, Path]:
    """A client certificate for ``common_name`` signed by the CA of ``files`` (made with
    ``keep_ca_key``), for mutual TLS: its certificate and key files (key mode 0600), next to the CA's
    in ``clients/``. ``ValueError`` when the CA's key was not kept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if files.ca_key is None:
        raise ValueError("this CA's key was not kept: it cannot sign client certificates")
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{files.ca_key} is not the EC key make_tls_files writes")
    ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _signed(
        _builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]), key.public_key(), days)
        .issuer_name(ca_cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False),
        ca_key,
    )
    directory = files.ca_cert.parent / "clients"
    directory.mkdir(exist_ok=True)
    cert_file, key_file = directory / f"{common_name}.pem", directory / f"{common_name}.key"
    cert_file.write_bytes(_pem(cert))
    write_private(key_file, _key_pem(key))
    return cert_file, key_file


def _builder(subject: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int) -> x509.CertificateBuilder:
    """A certificate builder for ``subject``, valid from 5 minutes ago (clock skew) for ``days``."""
    from cryptography import x509

    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
    )


def _signed(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    from cryptography.hazmat.primitives import hashes

    return builder.sign(key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem.decode()
