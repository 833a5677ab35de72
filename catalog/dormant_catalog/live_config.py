"""A function's live configuration: JSON values by name that running handlers read as ``ctx.config``
and that change without a restart (feature flags, thresholds: the seed's ConfigMap example).

Environment variables (``dormant_catalog.environment``) are read once by a process, so a change rolls
a new generation of every replica; live configuration is delivered through the mesh instead. The
catalog keeps it in ``function_config`` with a revision counter; the controller publishes each
service's revision retained on ``mesh/config/{svc}`` and records it as published; a runtime subscribes
to its service's topic before its request topics and hands each call the revision current when the
call arrived. A writer (``dormant config``, ``PUT /api/v1/functions/{name}/config``) waits until the
controller has published the new revision (``wait_published``), so the next call it makes sees it.

Values are published on the broker, where only the service's runtimes (and operators) may read them:
they are not for secrets, and a value that references one (``${SECRET:…}``) is refused with a pointer
to environment variables, which resolve such references in the runtime.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg.types.json import Jsonb

from .audit import record_audit
from .channels import ROUTES_CHANNEL, notify
from .db import Conn, Database
from .environment import SECRET_OPEN
from .errors import InvalidCatalogRequest

MAX_CONFIG_BYTES = 64 * 1024
"""The largest configuration (its JSON) a service may hold: it travels in one retained MQTT message."""
KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")
PUBLISH_WAIT_S = 5.0
"""How long a writer waits, by default, for the controller to publish a new revision."""


@dataclass(frozen=True, slots=True)
class LiveConfig:
    service: str
    values: dict[str, Any]
    revision: int
    published_revision: int

    @property
    def published(self) -> bool:
        return self.published_revision >= self.revision

    def payload(self) -> bytes:
        """What the controller publishes on ``mesh/config/{svc}``."""
        return orjson.dumps({"revision": self.revision, "values": self.values}, option=orjson.OPT_SORT_KEYS)


def config_problems(values: object) -> list[str]:
    """Why ``values`` cannot be a live configuration (empty when it can)."""
    if not isinstance(values, Mapping):
        return ["the configuration must be an object of values by name"]
    problems = [
        f"{key!r}: a name is a letter or _, then letters, digits, _ . - (at most 128)"
        for key in values
        if not isinstance(key, str) or not KEY.fullmatch(key)
    ]
    try:
        encoded = orjson.dumps(dict(values))
    except TypeError as exc:
        return [*problems, f"values must be JSON: {exc}"]
    if len(encoded) > MAX_CONFIG_BYTES:
        problems.append(f"the configuration is {len(encoded)} bytes of JSON; at most {MAX_CONFIG_BYTES}")
    if SECRET_OPEN.encode() in encoded:
        problems.append(
            "live configuration is published on the mesh, so it holds no secrets: reference a secret"
            " from an environment variable (dormant env set SVC NAME='${SECRET:name}')"
        )
    return problems


async def get_config(conn: Conn, service: str) -> LiveConfig:
    """The service's configuration (revision 0 and no values when none was ever set)."""
    cur = await conn.execute(
        "SELECT config, revision, published_revision FROM function_config WHERE service = %s", (service,)
    )
    row = await cur.fetchone()
    if row is None:
        return LiveConfig(service, {}, 0, 0)
    return LiveConfig(service, dict(row[0]), int(row[1]), int(row[2]))


async def set_config(conn: Conn, service: str, values: Mapping[str, Any], *, actor: str) -> LiveConfig:
    """Replace the service's configuration (call inside a transaction; the caller checks the service
    exists). An unchanged configuration keeps its revision; a change counts one, is audited by the
    names it set and removed (values may be sensitive enough to keep out of the audit log), and wakes
    the controller."""
    problems = config_problems(values)
    if problems:
        raise InvalidCatalogRequest("; ".join(problems))
    new = dict(values)
    # Lock the row (or the absence of one) so two writers count two revisions.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('function_config:' || %s))", (service,))
    current = await get_config(conn, service)
    if current.revision and current.values == new:
        return current
    cur = await conn.execute(
        "INSERT INTO function_config (service, config, revision) VALUES (%s, %s, 1)"
        " ON CONFLICT (service) DO UPDATE SET config = EXCLUDED.config,"
        " revision = function_config.revision + 1, updated_at = now()"
        " RETURNING revision, published_revision",
        (service, Jsonb(new)),
    )
    row = await cur.fetchone()
    assert row is not None
    changed = sorted(k for k in new if k not in current.values or current.values[k] != new[k])
    removed = sorted(set(current.values) - set(new))
    detail = {"revision": int(row[0]), "changed": changed, "removed": removed}
    await record_audit(conn, actor=actor, app_name=service, action="set-config", detail=detail)
    await notify(conn, ROUTES_CHANNEL, service)
    return LiveConfig(service, new, int(row[0]), int(row[1]))


async def configs_to_publish(conn: Conn) -> dict[str, LiveConfig]:
    """Every service the catalog serves (not soft-deleted) with its configuration, for the controller;
    a service with none has revision 0 and no values, and is published too, so a runtime learns at
    once that there is nothing to wait for."""
    cur = await conn.execute(
        "SELECT a.app_name, c.config, c.revision, c.published_revision"
        " FROM (SELECT DISTINCT app_name FROM application_catalog) a"
        " LEFT JOIN function_config c ON c.service = a.app_name"
        " WHERE NOT EXISTS (SELECT 1 FROM gateway_functions f"
        "                   WHERE f.name = a.app_name AND f.deleted_at IS NOT NULL)"
    )
    found: dict[str, LiveConfig] = {}
    for name, values, revision, published in await cur.fetchall():
        found[str(name)] = LiveConfig(
            str(name), dict(values or {}), int(revision or 0), int(published or 0)
        )
    return found


async def mark_published(conn: Conn, service: str, revision: int) -> None:
    """Record that ``revision`` of the service's configuration is retained on the broker."""
    await conn.execute(
        "UPDATE function_config SET published_revision = GREATEST(published_revision, %s)"
        " WHERE service = %s",
        (revision, service),
    )


async def wait_published(db: Database, service: str, revision: int, *, timeout_s: float) -> bool:
    """Wait until the controller has published ``revision`` (or a later one); False after
    ``timeout_s`` (no controller running, or a broker it cannot reach)."""
    deadline = time.monotonic() + timeout_s
    while True:
        async with db.transaction() as conn:
            current = await get_config(conn, service)
        if current.published_revision >= revision:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


async def forget_config(conn: Conn, services: list[str]) -> None:
    """Drop the configuration of purged services."""
    await conn.execute("DELETE FROM function_config WHERE service = ANY(%s)", (services,))
