"""Versioned SQL migrations: apply ``migrations/NNNN_*.sql`` in order, each once, under an advisory lock.

A catalog that already has every migration is recognised without the lock (one query): every pod checks
when it starts, and a whole pool starting at once would otherwise queue on the lock one by one.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import psycopg

from .db import mapped_errors
from .errors import MigrationError

# Arbitrary but fixed: every Dormant process that migrates takes this session-level advisory lock.
MIGRATION_LOCK_KEY = 0x446F726D  # "Dorm"

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Traversable | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: the package's), in order; refuse duplicate numbers."""
    if directory is None:
        directory = resources.files("dormant_catalog").joinpath("migrations")
    found: list[Migration] = []
    for entry in directory.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if not match:
            raise MigrationError(f"migration file name {entry.name!r} is not NNNN_name.sql")
        found.append(Migration(int(match.group(1)), entry.name, entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    # Numbers may leave gaps: components take number ranges (catalog 00xx, delivery 01xx, rollouts 02xx,
    # gateway 03xx) so parallel work never collides. Each migration is still applied once, in order.
    for previous, migration in itertools.pairwise(found):
        if migration.version == previous.version:
            raise MigrationError(f"two migrations numbered {migration.version:04d}")
    return found


async def migrate(url: str, *, connect_timeout: float = 10.0) -> list[str]:
    """Apply the pending migrations; return the names applied by this call (empty when up to date)."""
    migrations = load_migrations()
    applied_now: list[str] = []
    with mapped_errors():
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=max(1, int(connect_timeout))
        )
        async with conn:
            if {m.version for m in migrations} <= await _applied(conn):
                return applied_now  # up to date: no lock, no DDL
            await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
            try:
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
                cur = await conn.execute("SELECT version FROM schema_migrations")
                done = {int(row[0]) for row in await cur.fetchall()}
                for migration in migrations:
                    if migration.version in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(migration.sql.encode())
                        await conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                    applied_now.append(migration.name)
            finally:
                if not conn.closed:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
    return applied_now


async def _applied(conn: psycopg.AsyncConnection[Any]) -> set[int]:
    """The versions ``schema_migrations`` records (none before the first migration)."""
    try:
        cur = await conn.execute("SELECT version FROM schema_migrations")
    except psycopg.errors.UndefinedTable:
        return set()
    return {int(row[0]) for row in await cur.fetchall()}
