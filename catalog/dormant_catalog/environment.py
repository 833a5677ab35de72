"""A function's environment variables: what may be set, and the generation roll that delivers them.

Variables are set per service (``gateway_functions.environment``: the control-plane API's ``PUT
/api/v1/functions/{name}/environment`` and ``dormant env``) and reach every runtime of the service
with its slot claim: the sidecar passes them in the runtime's ``load`` command, which sets them before
the service is imported. A change is a new *generation* of every slot of the service: each pod loads
the same version again in a new process with the new variables, then drains the old one (as for a new
version), so a change costs no failed call and no handler sees two values within one process.

What cannot take effect is refused rather than stored: the runtime process is running before it
learns its service (a warm standby), so variables its interpreter reads at start (``PYTHON*``), the
dynamic loader's (``LD_*``) and Dormant's own settings (``DORMANT_*``) would be ignored or would
rewire the runtime; names are letters, digits and underscores, and all of them together hold at most
4 KB (the seed's limit).

A value may reference a secret instead of holding it: ``${SECRET:name}`` (the secret's ``value``
field) or ``${SECRET:name#field}``, anywhere in the value. The catalog stores the reference, never the
secret; the runtime resolves it (``dormant_secrets``). The reference syntax is parsed here, by
``secret_references``, because the catalog validates it and may import no secrets package; the secrets
package uses the same parser.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .channels import SLOTS_CHANNEL, notify
from .db import Conn

MAX_ENVIRONMENT_BYTES = 4096
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED_PREFIXES = ("DORMANT_", "PYTHON", "LD_")

SECRET_OPEN = "${SECRET:"
SECRET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
"""A secret's name (and a field's): letters, digits, ``_``, ``.``, ``-``; no ``/``, so a reference
cannot reach outside its scope's path."""
DEFAULT_FIELD = "value"
"""The field a plain (single-value) secret is stored under, and the one ``${SECRET:name}`` reads."""


@dataclass(frozen=True, slots=True)
class SecretReference:
    """One ``${SECRET:name#field}`` in a variable's value."""

    name: str
    field: str = DEFAULT_FIELD

    @property
    def text(self) -> str:
        """The reference as written (canonical form), for messages: never a value."""
        suffix = "" if self.field == DEFAULT_FIELD else f"#{self.field}"
        return f"${{SECRET:{self.name}{suffix}}}"


class SecretReferenceError(ValueError):
    """A malformed ``${SECRET:...}`` reference."""


def _parts(value: str) -> list[str | SecretReference]:
    """``value`` split into literal text and references; ``SecretReferenceError`` when malformed."""
    parts: list[str | SecretReference] = []
    rest = value
    while True:
        start = rest.find(SECRET_OPEN)
        if start < 0:
            if rest:
                parts.append(rest)
            return parts
        if start:
            parts.append(rest[:start])
        body_start = start + len(SECRET_OPEN)
        end = rest.find("}", body_start)
        if end < 0:
            raise SecretReferenceError("a ${SECRET: reference is not closed with }")
        body = rest[body_start:end]
        name, sep, field = body.partition("#")
        if not SECRET_NAME.fullmatch(name):
            raise SecretReferenceError(
                f"${{SECRET:{body}}}: a secret name is 1 to 128 letters, digits, '_', '.' or '-'"
            )
        if sep and not SECRET_NAME.fullmatch(field):
            raise SecretReferenceError(
                f"${{SECRET:{body}}}: a field name is 1 to 128 letters, digits, '_', '.' or '-'"
            )
        parts.append(SecretReference(name, field if sep else DEFAULT_FIELD))
        rest = rest[end + 1 :]


def secret_references(value: str) -> list[SecretReference]:
    """The secret references in one variable's value, in order (``SecretReferenceError`` if one is
    malformed)."""
    return [part for part in _parts(value) if isinstance(part, SecretReference)]


def environment_references(environment: Mapping[str, str]) -> dict[str, list[SecretReference]]:
    """The variables of ``environment`` that reference secrets, with their references (malformed
    values are left out: ``environment_problems`` refuses them)."""
    found: dict[str, list[SecretReference]] = {}
    for key, value in environment.items():
        try:
            references = secret_references(value)
        except SecretReferenceError:
            continue
        if references:
            found[key] = references
    return found


def substitute(value: str, lookup: Callable[[SecretReference], str]) -> str:
    """``value`` with every reference replaced by ``lookup(reference)``."""
    return "".join(part if isinstance(part, str) else lookup(part) for part in _parts(value))


def environment_problems(value: object) -> list[tuple[str, str]]:
    """What is wrong with ``value`` as a function's environment: ``(key or "", message)`` pairs; empty
    when it may be set."""
    if not isinstance(value, Mapping):
        return [("", "environment must be an object of string values")]
    problems: list[tuple[str, str]] = []
    size = 0
    for key, item in value.items():
        if not isinstance(key, str) or not NAME.fullmatch(key):
            problems.append((str(key), "variable names are letters, digits and underscores"))
            continue
        if key.upper().startswith(RESERVED_PREFIXES):
            prefixes = ", ".join(RESERVED_PREFIXES)
            problems.append(
                (
                    key,
                    f"{key} is reserved (names starting with {prefixes} cannot be set: the runtime is"
                    " already running when it learns its variables)",
                )
            )
        if not isinstance(item, str):
            problems.append((key, "variable values must be strings"))
            continue
        if "\0" in item:
            problems.append((key, "a variable value cannot hold a NUL character"))
        try:
            secret_references(item)
        except SecretReferenceError as exc:
            problems.append((key, str(exc)))
        size += len(key.encode()) + len(item.encode())
    if size > MAX_ENVIRONMENT_BYTES:
        problems.append(("", f"environment is {size} bytes; at most {MAX_ENVIRONMENT_BYTES} bytes in total"))
    return problems


def settable(environment: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environment`` a runtime applies: every one ``environment_problems`` accepts
    (a row written before a rule existed cannot rewire the runtime)."""
    refused = {key for key, _ in environment_problems(environment) if key}
    return {key: value for key, value in environment.items() if key not in refused}


async def roll_generation(conn: Conn, app_name: str) -> int:
    """A new generation of every slot of ``app_name`` (each pod reloads its version in a new process);
    the number of slots rolled."""
    cur = await conn.execute(
        "UPDATE replica_slots SET generation = generation + 1, updated_at = now() WHERE app_name = %s",
        (app_name,),
    )
    if cur.rowcount:
        await notify(conn, SLOTS_CHANNEL, app_name)
    return cur.rowcount
