"""The ``version_compatibility`` table: per version, the verdict of its interface against the version
that was live when it was published (breaking or not, the findings, its schema version and the earlier
schema versions it is compatible with), and who approved a breaking version going live. Every read
and write of it is here, and so is the gate.

The verdict itself is computed by ``dormant_codegen.compat`` at publish time (this package does not
import codegen); ``record`` stores it in the publishing transaction. ``require_live_approval`` is the
gate ``aliases.set_alias`` runs before it gives a version weight in ``live`` (every path: an alias set,
a deploy, a rollout's start and steps, a promotion): a breaking version without approval raises
``ApprovalRequired``. Other aliases and the version's own topic are not gated, so a breaking version
can be tried before it is approved. ``approve`` records the approval and writes the audit log
(``approve-breaking``, the actor, the reason, the findings' summary); approving the status of a version
(``versions.set_status(..., "approved")``, ``dormant approve``) approves its breaking change too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .audit import record_audit
from .db import Conn
from .errors import CatalogError, InvalidCatalogRequest
from .names import check_app_name

LIVE_ALIAS = "live"  # aliases.LIVE_ALIAS (aliases imports this module)
_COLUMNS = (
    "app_name, version, compared_to, breaking, findings, schema_version, backward_compatible,"
    " recorded_at, approved_by, approved_at, approval_reason"
)
MAX_REASON = 1000
SUMMARY_FINDINGS = 3


class ApprovalRequired(CatalogError):
    """A breaking version was to get weight in ``live`` before anyone approved it."""

    def __init__(self, app_name: str, version: int, record: CompatibilityRecord) -> None:
        self.app_name = app_name
        self.version = version
        self.record = record
        against = f" against v{record.compared_to}" if record.compared_to is not None else ""
        super().__init__(
            f"{app_name} v{version} breaks its interface{against} ({record.summary()}): approve it first"
            f" (dormant approve {app_name} {version}), or try it under another alias"
        )


@dataclass(frozen=True, slots=True)
class CompatibilityRecord:
    """One version's verdict and approval."""

    app_name: str
    version: int
    compared_to: int | None
    breaking: bool
    findings: list[dict[str, Any]]
    schema_version: str
    backward_compatible: list[str]
    recorded_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    approval_reason: str | None

    @property
    def approved(self) -> bool:
        return self.approved_at is not None

    @property
    def needs_approval(self) -> bool:
        """Breaking and not approved: it gets no weight in ``live``."""
        return self.breaking and not self.approved

    @property
    def breaks(self) -> list[dict[str, Any]]:
        return [f for f in self.findings if f.get("breaking", True)]

    def summary(self, limit: int = SUMMARY_FINDINGS) -> str:
        """The first ``limit`` breaking findings, ``path: RULE``, and how many more."""
        breaks = self.breaks
        shown = ", ".join(f"{f.get('path')}: {f.get('rule')}" for f in breaks[:limit])
        more = len(breaks) - limit
        return shown + (f" and {more} more" if more > 0 else "") if breaks else "no breaking findings"

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.app_name,
            "version": self.version,
            "comparedTo": self.compared_to,
            "verdict": "breaking" if self.breaking else "compatible",
            "breaking": self.breaking,
            "findings": self.findings,
            "schemaVersion": self.schema_version,
            "backwardCompatible": self.backward_compatible,
            "recordedAt": self.recorded_at.isoformat(),
            "approvedBy": self.approved_by,
            "approvedAt": self.approved_at.isoformat() if self.approved_at else None,
            "approvalReason": self.approval_reason,
        }


@dataclass(frozen=True, slots=True)
class Baseline:
    """The version a new one is compared with: its number, interface and schema version (None when it
    was registered before verdicts were recorded)."""

    version: int
    schema_definition: dict[str, Any]
    schema_version: str | None


async def live_primary(conn: Conn, app_name: str) -> int | None:
    """The version with the highest weight in ``live`` (ties: the newer), or None."""
    cur = await conn.execute(
        "SELECT w.key::int FROM aliases, jsonb_each_text(weights) AS w(key, value)"
        " WHERE app_name = %s AND alias = %s AND w.value::numeric > 0"
        " ORDER BY w.value::numeric DESC, w.key::int DESC LIMIT 1",
        (app_name, LIVE_ALIAS),
    )
    row = await cur.fetchone()
    return None if row is None else int(row[0])


async def baseline(conn: Conn, app_name: str, *, before: int | None = None) -> Baseline | None:
    """What a new version of ``app_name`` is compared with: the live version, else the latest version
    (older than ``before``, when given); None for a first version."""
    version = await live_primary(conn, app_name)
    if version is None or (before is not None and version >= before):
        cur = await conn.execute(
            "SELECT max(version) FROM application_catalog WHERE app_name = %s"
            " AND (%s::int IS NULL OR version < %s::int)",
            (app_name, before, before),
        )
        row = await cur.fetchone()
        if row is None or row[0] is None:
            return None
        version = int(row[0])
    return await read_baseline(conn, app_name, version)


async def read_baseline(conn: Conn, app_name: str, version: int) -> Baseline | None:
    """``version`` of ``app_name`` as a ``Baseline``, or None when it does not exist."""
    cur = await conn.execute(
        "SELECT v.schema_definition, c.schema_version FROM application_catalog AS v"
        " LEFT JOIN version_compatibility AS c USING (app_name, version)"
        " WHERE v.app_name = %s AND v.version = %s",
        (app_name, version),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return Baseline(version, dict(row[0] or {}), None if row[1] is None else str(row[1]))


async def earlier_interfaces(
    conn: Conn, app_name: str, *, before: int
) -> list[tuple[int, str, dict[str, Any]]]:
    """(version, schema version, interface) of the versions before ``before`` that have a schema
    version, the newest of each schema version, newest first."""
    cur = await conn.execute(
        "SELECT DISTINCT ON (c.schema_version) v.version, c.schema_version, v.schema_definition"
        " FROM application_catalog AS v JOIN version_compatibility AS c USING (app_name, version)"
        " WHERE v.app_name = %s AND v.version < %s ORDER BY c.schema_version, v.version DESC",
        (app_name, before),
    )
    rows = [(int(r[0]), str(r[1]), dict(r[2] or {})) for r in await cur.fetchall()]
    return sorted(rows, key=lambda r: r[0], reverse=True)


async def schema_versions(conn: Conn, app_name: str) -> list[str]:
    """Every schema version recorded for ``app_name`` (the numbers a new one must not reuse)."""
    cur = await conn.execute(
        "SELECT DISTINCT schema_version FROM version_compatibility WHERE app_name = %s", (app_name,)
    )
    return [str(r[0]) for r in await cur.fetchall()]


async def record(
    conn: Conn,
    app_name: str,
    version: int,
    *,
    compared_to: int | None,
    breaking: bool,
    findings: Sequence[dict[str, Any]],
    schema_version: str,
    backward_compatible: Sequence[str],
) -> CompatibilityRecord:
    """Store ``version``'s verdict (call in the transaction that registers it); once per version."""
    check_app_name(app_name)
    cur = conn.cursor(row_factory=class_row(CompatibilityRecord))
    await cur.execute(
        "INSERT INTO version_compatibility (app_name, version, compared_to, breaking, findings,"
        " schema_version, backward_compatible) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        f" ON CONFLICT (app_name, version) DO NOTHING RETURNING {_COLUMNS}",
        (
            app_name,
            version,
            compared_to,
            breaking,
            Jsonb(list(findings)),
            schema_version,
            Jsonb(list(backward_compatible)),
        ),
    )
    created = await cur.fetchone()
    if created is not None:
        return created
    existing = await get(conn, app_name, version)
    assert existing is not None
    return existing


async def get(conn: Conn, app_name: str, version: int) -> CompatibilityRecord | None:
    cur = conn.cursor(row_factory=class_row(CompatibilityRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM version_compatibility WHERE app_name = %s AND version = %s",
        (app_name, version),
    )
    return await cur.fetchone()


async def list_records(conn: Conn, app_name: str) -> list[CompatibilityRecord]:
    cur = conn.cursor(row_factory=class_row(CompatibilityRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM version_compatibility WHERE app_name = %s ORDER BY version", (app_name,)
    )
    return await cur.fetchall()


async def approve(
    conn: Conn, app_name: str, version: int, *, actor: str, reason: str | None = None
) -> CompatibilityRecord | None:
    """Approve ``version``'s breaking change going live (audited as ``approve-breaking``). A version
    that is not breaking (or has no verdict) needs nothing: it is returned (or None) unchanged, and so
    is one approved already."""
    if reason is not None and len(reason) > MAX_REASON:
        raise InvalidCatalogRequest(f"the reason is longer than {MAX_REASON} characters")
    cur = conn.cursor(row_factory=class_row(CompatibilityRecord))
    await cur.execute(
        "UPDATE version_compatibility SET approved_by = %s, approved_at = now(), approval_reason = %s"
        " WHERE app_name = %s AND version = %s AND breaking AND approved_at IS NULL"
        f" RETURNING {_COLUMNS}",
        (actor, reason, app_name, version),
    )
    approved = await cur.fetchone()
    if approved is None:
        return await get(conn, app_name, version)
    detail: dict[str, Any] = {
        "version": version,
        "comparedTo": approved.compared_to,
        "schemaVersion": approved.schema_version,
        "breaking": approved.summary(),
    }
    if reason:
        detail["why"] = reason
    await record_audit(conn, actor=actor, app_name=app_name, action="approve-breaking", detail=detail)
    return approved


async def require_live_approval(conn: Conn, app_name: str, versions: Iterable[int]) -> None:
    """Raise ``ApprovalRequired`` for the first of ``versions`` that is breaking and not approved."""
    wanted = sorted(set(versions))
    if not wanted:
        return
    cur = conn.cursor(row_factory=class_row(CompatibilityRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM version_compatibility WHERE app_name = %s AND version = ANY(%s)"
        " AND breaking AND approved_at IS NULL ORDER BY version LIMIT 1",
        (app_name, wanted),
    )
    blocked = await cur.fetchone()
    if blocked is not None:
        raise ApprovalRequired(app_name, blocked.version, blocked)
