"""Interface verdicts against the catalog: what a new interface is compared with and what is recorded.

``record_new_version`` runs in the transaction that registers a version (``publish.register_build``):
it compares the new interface with the version live at that moment (the latest one when none is live),
numbers its schema version (``compat.next_schema_version``), lists the earlier schema versions it is
compatible with, and stores it all (``dormant_catalog.compatibility.record``). ``assess`` is the same
comparison without storing anything, for ``dormant diff``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dormant_catalog import compatibility
from dormant_catalog.compatibility import Baseline, CompatibilityRecord
from dormant_catalog.db import Conn

from .compat import (
    FIRST_SCHEMA_VERSION,
    Earlier,
    InvalidInterface,
    Verdict,
    backward_compatible,
    compare,
    next_schema_version,
)


@dataclass(frozen=True, slots=True)
class Assessment:
    """A new interface against ``baseline`` (None: nothing to compare with, a first version)."""

    baseline: Baseline | None
    verdict: Verdict | None

    @property
    def breaking(self) -> bool:
        return self.verdict is not None and self.verdict.breaking


def _verdict(base: Baseline | None, interface: Mapping[str, Any]) -> Verdict | None:
    if base is None:
        return None
    try:
        return compare(base.schema_definition, interface)
    except InvalidInterface:  # registered without an interface document (by hand): nothing to hold to
        return None


async def assess(
    conn: Conn,
    app_name: str,
    interface: Mapping[str, Any],
    *,
    against: int | None = None,
    before: int | None = None,
) -> Assessment:
    """``interface`` against version ``against``, else against the live version (else the latest one,
    older than ``before`` when given). ``compat.InvalidInterface`` for a new document that is not an
    interface; ``LookupError`` for an ``against`` version that does not exist."""
    if against is not None:
        base = await compatibility.read_baseline(conn, app_name, against)
        if base is None:
            raise LookupError(f"{app_name!r} has no version {against}")
    else:
        base = await compatibility.baseline(conn, app_name, before=before)
    return Assessment(base, _verdict(base, interface))


async def record_new_version(
    conn: Conn, app_name: str, version: int, interface: Mapping[str, Any]
) -> CompatibilityRecord:
    """Compare, number and store the verdict of the just-registered ``version`` (same transaction)."""
    assessment = await assess(conn, app_name, interface, before=version)
    base, verdict = assessment.baseline, assessment.verdict
    taken = await compatibility.schema_versions(conn, app_name)
    if base is None or verdict is None:
        # a first version is 1.0.0; one with nothing to compare with starts a new major line
        schema_version = (
            next_schema_version(FIRST_SCHEMA_VERSION, "major", taken) if taken else FIRST_SCHEMA_VERSION
        )
        findings: list[dict[str, Any]] = []
    else:
        schema_version = next_schema_version(base.schema_version or FIRST_SCHEMA_VERSION, verdict.bump, taken)
        findings = [f.to_json() for f in verdict.findings]
    earlier = [
        Earlier(v, sv, doc)
        for v, sv, doc in await compatibility.earlier_interfaces(conn, app_name, before=version)
    ]
    if base is not None and base.schema_version is None and verdict is not None and not verdict.breaking:
        # the baseline predates verdicts: it counts as 1.0.0 for callers
        earlier.append(Earlier(base.version, FIRST_SCHEMA_VERSION, base.schema_definition))
    return await compatibility.record(
        conn,
        app_name,
        version,
        compared_to=base.version if base is not None and verdict is not None else None,
        breaking=verdict is not None and verdict.breaking,
        findings=findings,
        schema_version=schema_version,
        backward_compatible=[sv for sv in backward_compatible(interface, earlier) if sv != schema_version],
    )
