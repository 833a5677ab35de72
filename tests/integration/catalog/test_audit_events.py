"""The audit log's batched kinds on a real catalog: ``AuditTrail`` writes what processes report in
batches, keeps entries through an outage and drops the oldest beyond its bound (counted); the
retention sweep deletes execution, authorization and security entries past the retention period and
keeps deployment history; filters select by kind, actor, action and time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dormant_catalog import open_catalog
from dormant_catalog.audit import AuditEvent, list_audit, record_audit, record_events
from dormant_catalog.audit_trail import AuditTrail
from dormant_controller.audit_retention import AuditRetention

APP = "audit-probe"


async def test_the_trail_writes_in_batches_and_survives_an_unreachable_catalog(catalog_url: str) -> None:
    # Unreachable first: entries wait, the oldest beyond the bound are dropped and counted.
    away = AuditTrail("postgresql://nobody@127.0.0.1:1/none", flush_s=3600, max_buffered=3, timeout_s=1)
    for n in range(5):
        away.add(AuditEvent("execution", "ann", APP, "call", {"n": n}))
    await away.flush()
    assert away.written == 0 and away.dropped == 2
    await away.close()

    async with await open_catalog(catalog_url):  # migrated, as a mesh's catalog is
        pass
    trail = AuditTrail(catalog_url, flush_s=3600, batch=2)
    for n in range(5):
        trail.add(AuditEvent("execution", "ann", APP, "call", {"n": n}))
    trail.add(AuditEvent("security", "anonymous", APP, "token-refused", {"reason": "expired"}))
    await trail.close()  # writes what is left
    assert trail.written == 6
    async with await open_catalog(catalog_url) as catalog:
        async with catalog.db.transaction() as conn:
            executions = await list_audit(conn, APP, kinds=["execution"], actor="ann")
            security = await list_audit(conn, APP, kinds=["security"], action="token-refused")
    assert [e.detail["n"] for e in executions] == [0, 1, 2, 3, 4]
    assert [e.actor for e in security] == ["anonymous"] and security[0].kind == "security"


async def test_retention_deletes_old_events_and_keeps_deployment_history(catalog_url: str) -> None:
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=8), now - timedelta(hours=1)
    async with await open_catalog(catalog_url) as catalog:
        async with catalog.db.transaction() as conn:
            await record_audit(conn, actor="cli:ann", app_name=APP, action="deploy", detail={})
            await conn.execute("UPDATE audit_log SET at = %s WHERE app_name = %s", (old, APP))
            await record_events(
                conn,
                [
                    AuditEvent("execution", "ann", APP, "call", {"when": "old"}, at=old),
                    AuditEvent("authorization", "bob", APP, "refused", {"when": "old"}, at=old),
                    AuditEvent("execution", "ann", APP, "call", {"when": "recent"}, at=recent),
                ],
            )
        deleted = await AuditRetention(catalog.db, retention_s=7 * 86400).sweep()
        assert deleted >= 2
        async with catalog.db.transaction() as conn:
            left = await list_audit(conn, APP, kinds=None)
            since = await list_audit(conn, APP, kinds=None, since=now - timedelta(days=1))
            deployments = await list_audit(conn, APP)  # by default, deployment history only
    assert [(e.kind, e.detail.get("when")) for e in left] == [("deployment", None), ("execution", "recent")]
    assert [e.kind for e in since] == ["execution"]
    assert [e.kind for e in deployments] == ["deployment"]
