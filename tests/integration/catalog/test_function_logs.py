"""``function_logs`` on a real Postgres: storing batches, reading one service's records by version, time,
call and level, retention with a moved clock, and following records whose commits come out of order."""

from __future__ import annotations

import datetime
from typing import Any

import psycopg
import pytest

from dormant_catalog import Catalog, InvalidCatalogRequest
from dormant_catalog.function_logs import (
    LogFilter,
    LogFollower,
    NewLog,
    insert_logs,
    parse_since,
    purge_logs,
    query_logs,
    retention_from_env,
    severity_of,
)

T0 = datetime.datetime(2025, 11, 23, 12, 0, tzinfo=datetime.UTC)
DAY = datetime.timedelta(days=1)


def entry(
    app: str,
    message: str,
    *,
    version: int = 1,
    at: datetime.datetime = T0,
    level: str = "INFO",
    call: str | None = None,
) -> NewLog:
    record: dict[str, Any] = {
        "timestamp": at.isoformat(),
        "level": level,
        "requestId": call,
        "functionName": app,
        "version": f"v{version}",
        "message": message,
    }
    return NewLog(app, version, at, severity_of(level), call, record)


async def messages(catalog: Catalog, wanted: LogFilter, **kwargs: Any) -> list[str]:
    return [r.record["message"] for r in await catalog.db.run(query_logs, wanted, **kwargs)]


async def test_reads_are_per_service_and_filtered(catalog: Catalog) -> None:
    await catalog.db.run(
        insert_logs,
        [
            entry("svc-a", "a1", at=T0),
            entry(
                "svc-a", "a2", at=T0 + datetime.timedelta(seconds=1), version=2, level="WARNING", call="c-1"
            ),
            entry("svc-a", "a3", at=T0 + datetime.timedelta(seconds=2), level="ERROR", call="c-1"),
            entry("svc-b", "b1", at=T0 + datetime.timedelta(seconds=3), call="c-1"),
            entry("svc-a", "a4", at=T0 + datetime.timedelta(seconds=4)),
        ],
    )
    a = LogFilter("svc-a")
    assert await messages(catalog, a) == ["a1", "a2", "a3", "a4"]  # oldest first
    assert await messages(catalog, a, limit=2) == ["a3", "a4"]  # the newest two
    assert await messages(catalog, LogFilter("svc-a", version=2)) == ["a2"]
    assert await messages(catalog, LogFilter("svc-a", call_id="c-1")) == ["a2", "a3"]  # never b1
    assert await messages(catalog, LogFilter("svc-b", call_id="c-1")) == ["b1"]
    assert await messages(catalog, LogFilter("svc-a", min_severity=30)) == ["a2", "a3"]
    since = LogFilter("svc-a", since=datetime.timedelta(seconds=3))
    assert await messages(catalog, since, now=T0 + datetime.timedelta(seconds=4)) == [
        "a2",
        "a3",
        "a4",
    ]
    assert await messages(catalog, LogFilter("svc-a", since=T0 + datetime.timedelta(seconds=2))) == [
        "a3",
        "a4",
    ]
    assert await messages(catalog, LogFilter("svc-c")) == []
    with pytest.raises(InvalidCatalogRequest):
        await catalog.db.run(query_logs, a, limit=1001)


async def test_retention_with_a_moved_clock(catalog: Catalog) -> None:
    await catalog.db.run(insert_logs, [entry("svc", "old", at=T0), entry("svc", "new", at=T0 + 3 * DAY)])
    week = 7 * 86400.0
    call = LogFilter("svc")
    # A day later both are there, however the clock reads.
    assert await catalog.db.run(purge_logs, retention_s=week, now=T0 + DAY) == 0
    assert await messages(catalog, call, now=T0 + DAY) == ["old", "new"]
    # Past the retention period of the first, only the second is left.
    assert (
        await catalog.db.run(purge_logs, retention_s=week, now=T0 + 7 * DAY + datetime.timedelta(seconds=1))
        == 1
    )
    assert await messages(catalog, call) == ["new"]
    # Batches: the number deleted per call is bounded.
    await catalog.db.run(insert_logs, [entry("svc", f"m{i}", at=T0) for i in range(5)])
    assert await catalog.db.run(purge_logs, retention_s=week, now=T0 + 30 * DAY, batch=2) == 2
    assert await catalog.db.run(purge_logs, retention_s=week, now=T0 + 30 * DAY, batch=10) == 4
    assert await messages(catalog, call) == []


def test_retention_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert retention_from_env({}) == 7 * 86400.0
    assert retention_from_env({"DORMANT_LOG_RETENTION_S": "3600"}) == 3600.0
    for bad in ("0", "-5", "a week", "nan", "inf"):
        with pytest.raises(ValueError, match="DORMANT_LOG_RETENTION_S"):
            retention_from_env({"DORMANT_LOG_RETENTION_S": bad})


def test_since() -> None:
    assert parse_since("10m") == datetime.timedelta(minutes=10)
    assert parse_since("1h30m") == datetime.timedelta(minutes=90)
    assert parse_since("7d") == datetime.timedelta(days=7)
    assert parse_since("2025-11-23T12:00:00Z") == T0
    for bad in ("", "10", "10 minutes", "2025-11-23T12:00:00", "yesterday"):
        with pytest.raises(InvalidCatalogRequest, match="since must be"):
            parse_since(bad)


async def test_follower_sees_records_whose_commit_comes_late(catalog: Catalog, catalog_url: str) -> None:
    follower = LogFollower(catalog.db, LogFilter("svc"), lookback_s=60.0)
    await catalog.db.run(insert_logs, [entry("svc", "before")])
    await follower.start()
    assert await follower.poll() == []  # only what is stored from the start on
    # One writer takes a seq and has not committed yet; another stores after it and commits first.
    async with await psycopg.AsyncConnection.connect(catalog_url) as slow:
        async with slow.transaction():
            await insert_logs(slow, [entry("svc", "slow")])
            await catalog.db.run(insert_logs, [entry("svc", "fast"), entry("other", "not mine")])
            assert [r.record["message"] for r in await follower.poll()] == ["fast"]
        assert [r.record["message"] for r in await follower.poll()] == ["slow"]
    assert await follower.poll() == []  # each record once
    follower.skip([])
    await catalog.db.run(insert_logs, [entry("svc", "later", level="ERROR")])
    [row] = await follower.poll()
    assert row.record["message"] == "later" and row.severity == 40 and row.app_name == "svc"
