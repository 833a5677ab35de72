"""Queries on ``function_logs``: the log records pods capture from their runtimes, kept for a retention
period.

Pod sidecars insert records in batches (``insert_logs``); ``dormant logs`` and the gateway's
``GET /api/v1/functions/{name}/logs`` read them, always for one service (``query_logs``, and
``LogFollower`` for new records as they are stored); the active controller deletes records older than
the retention period (``purge_logs``, ``DORMANT_LOG_RETENTION_S``, 7 days by default). Each function
that depends on the time takes ``now`` (default: the database's clock), so a test can move the clock.

A record is the JSON object of ``dormant_telemetry.logs`` (``timestamp``, ``level``, ``requestId``,
``functionName``, ``version``, ``message`` ...); the columns beside it exist to find it quickly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import os
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .db import Conn, Database
from .errors import InvalidCatalogRequest

RETENTION_ENV = "DORMANT_LOG_RETENTION_S"
DEFAULT_RETENTION_S = 7 * 86400.0
MIN_RETENTION_S = 1.0
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
PURGE_BATCH = 10_000

SEVERITY: Mapping[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
"""Level name -> the number stored in ``severity`` (the same scale as Python's ``logging``)."""


def severity_of(level: object) -> int:
    """The stored number of a record's ``level`` (INFO for a level it does not know)."""
    return SEVERITY.get(str(level).upper(), SEVERITY["INFO"])


def retention_from_env(environ: Mapping[str, str] | None = None) -> float:
    """``$DORMANT_LOG_RETENTION_S`` in seconds (default 7 days); ``ValueError`` unless it is a number of
    at least one second."""
    raw = (os.environ if environ is None else environ).get(RETENTION_ENV, "").strip()
    if not raw:
        return DEFAULT_RETENTION_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{RETENTION_ENV} must be a number of seconds, not {raw[:40]!r}") from None
    if not value >= MIN_RETENTION_S or value == float("inf"):
        raise ValueError(f"{RETENTION_ENV} must be at least {MIN_RETENTION_S:g} second, not {raw[:40]!r}")
    return value


_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_since(text: str) -> datetime.timedelta | datetime.datetime:
    """``--since`` / ``?since=``: a duration back from now (``30s``, ``10m``, ``2h``, ``7d``, ``1h30m``)
    or an ISO 8601 time with a zone (``2025-11-23T12:00:00Z``); ``InvalidCatalogRequest`` otherwise."""
    value = text.strip()
    if value and _DURATION_PART.sub("", value) == "" and len(value) <= 40:
        seconds = sum(float(n) * _UNIT_S[unit] for n, unit in _DURATION_PART.findall(value))
        if seconds <= 100 * 365 * 86400.0:
            return datetime.timedelta(seconds=seconds)
    try:
        moment = datetime.datetime.fromisoformat(value) if len(value) <= 40 else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidCatalogRequest(
            f"since must be a duration such as 10m, 2h or 7d, or a time with a zone such as"
            f" 2025-11-23T12:00:00Z; not {text[:60]!r}"
        )
    return moment


@dataclass(frozen=True, slots=True)
class NewLog:
    """One record to store: whose it is, when, how severe, for which call, and the record itself."""

    app_name: str
    version: int
    ts: datetime.datetime
    severity: int
    call_id: str | None
    record: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StoredLog:
    seq: int
    app_name: str
    version: int
    ts: datetime.datetime
    severity: int
    call_id: str | None
    record: dict[str, Any]


async def insert_logs(conn: Conn, logs: Sequence[NewLog]) -> int:
    """Store ``logs`` in one statement; the number stored."""
    if not logs:
        return 0
    await conn.execute(
        "INSERT INTO function_logs (app_name, version, ts, severity, call_id, record)"
        " SELECT * FROM unnest(%(apps)s::text[], %(versions)s::int[], %(ts)s::timestamptz[],"
        " %(severities)s::smallint[], %(calls)s::text[], %(records)s::text[]::jsonb[])",
        {
            "apps": [log.app_name for log in logs],
            "versions": [log.version for log in logs],
            "ts": [log.ts for log in logs],
            "severities": [log.severity for log in logs],
            "calls": [log.call_id for log in logs],
            "records": [orjson.dumps(log.record, default=str).decode() for log in logs],
        },
    )
    return len(logs)


_COLUMNS = "seq, app_name, version, ts, severity, call_id, record"
_FILTERS = (
    "app_name = %(app)s"
    " AND (%(version)s::int IS NULL OR version = %(version)s::int)"
    " AND (%(since)s::timestamptz IS NULL OR ts >= %(since)s::timestamptz)"
    " AND (%(until)s::timestamptz IS NULL OR ts <= %(until)s::timestamptz)"
    " AND (%(call)s::text IS NULL OR call_id = %(call)s::text)"
    " AND (%(severity)s::int IS NULL OR severity >= %(severity)s::int)"
)


FIELD_ORDER = (
    "timestamp",
    "level",
    "requestId",
    "functionName",
    "version",
    "message",
    "duration",
    "traceId",
    "spanId",
)
"""The seed's fields first, as they were written (jsonb keeps keys in an order of its own)."""


def _row(row: Sequence[Any]) -> StoredLog:
    stored = row[6] if isinstance(row[6], dict) else orjson.loads(row[6])
    record = {key: stored[key] for key in FIELD_ORDER if key in stored}
    record.update((key, value) for key, value in stored.items() if key not in record)
    return StoredLog(int(row[0]), row[1], int(row[2]), row[3], int(row[4]), row[5], record)


def _check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidCatalogRequest(f"limit must be between 1 and {MAX_LIMIT}")
    return limit


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What a reader wants of one service's records (every field but ``app_name`` optional)."""

    app_name: str
    version: int | None = None
    since: datetime.timedelta | datetime.datetime | None = None
    until: datetime.datetime | None = None
    call_id: str | None = None
    min_severity: int | None = None

    def params(self, now: datetime.datetime | None) -> dict[str, Any]:
        since = self.since
        if isinstance(since, datetime.timedelta):
            assert now is not None, "a relative since needs the time"
            since = now - since
        return {
            "app": self.app_name,
            "version": self.version,
            "since": since,
            "until": self.until,
            "call": self.call_id,
            "severity": self.min_severity,
        }

    def matches(self, app_name: str, version: int, record: Mapping[str, Any]) -> bool:
        """Whether a live record (from ``mesh/logs``) passes the filter's service, version, call and
        level (a live record is new: ``since`` and ``until`` are the reader's to apply)."""
        if app_name != self.app_name or (self.version is not None and version != self.version):
            return False
        if self.call_id is not None and record.get("requestId") != self.call_id:
            return False
        return self.min_severity is None or severity_of(record.get("level")) >= self.min_severity


async def db_now(conn: Conn) -> datetime.datetime:
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    moment: datetime.datetime = row[0]
    return moment


async def query_logs(
    conn: Conn,
    wanted: LogFilter,
    *,
    limit: int = DEFAULT_LIMIT,
    now: datetime.datetime | None = None,
) -> list[StoredLog]:
    """The newest ``limit`` records of one service that pass ``wanted``, oldest first. A relative
    ``since`` counts back from ``now`` (default: the database's clock)."""
    if now is None and isinstance(wanted.since, datetime.timedelta):
        now = await db_now(conn)
    params = wanted.params(now)
    params["limit"] = _check_limit(limit)
    cur = await conn.execute(
        f"SELECT * FROM (SELECT {_COLUMNS} FROM function_logs WHERE {_FILTERS}"
        " ORDER BY ts DESC, seq DESC LIMIT %(limit)s) AS newest ORDER BY ts, seq",
        params,
    )
    return [_row(row) for row in await cur.fetchall()]


async def logs_after(
    conn: Conn, wanted: LogFilter, after_seq: int, *, limit: int = MAX_LIMIT
) -> tuple[list[StoredLog], int]:
    """Records of one service stored after ``after_seq`` (in store order) that pass ``wanted`` (its
    ``since`` and ``until`` are not applied: new records are the point), and the highest ``seq`` of
    any service's record at that moment (where a reader may continue from)."""
    params = dataclasses.replace(wanted, since=None, until=None).params(None)
    params.update(after=after_seq, limit=_check_limit(limit))
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM function_logs WHERE seq > %(after)s AND {_FILTERS}"
        " ORDER BY seq LIMIT %(limit)s",
        params,
    )
    rows = [_row(row) for row in await cur.fetchall()]
    top = await last_seq(conn)
    return rows, max([top, *(r.seq for r in rows)])


async def last_seq(conn: Conn) -> int:
    """The highest ``seq`` stored so far (0 for none)."""
    cur = await conn.execute("SELECT COALESCE(max(seq), 0) FROM function_logs")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def purge_logs(
    conn: Conn, *, retention_s: float, now: datetime.datetime | None = None, batch: int = PURGE_BATCH
) -> int:
    """Delete up to ``batch`` records older than ``retention_s`` before ``now`` (default: the database's
    clock), oldest first; the number deleted (call again while it equals ``batch``)."""
    cur = await conn.execute(
        "DELETE FROM function_logs WHERE seq IN (SELECT seq FROM function_logs"
        " WHERE ts < COALESCE(%(now)s::timestamptz, now()) - make_interval(secs => %(retention)s::float8)"
        " ORDER BY ts LIMIT %(batch)s)",
        {"now": now, "retention": retention_s, "batch": batch},
    )
    return cur.rowcount


class LogFollower:
    """New records of one service as they are stored, by polling (``dormant logs -f`` without the
    broker, and the gateway's ``?follow=true``).

    Rows get their ``seq`` when inserted but become visible when their transaction commits, so a row
    may appear after one with a higher ``seq``. The follower therefore re-reads from a *low-water
    mark*, the highest ``seq`` it saw ``lookback_s`` ago, and skips rows it has handed out already.
    """

    def __init__(
        self,
        db: Database,
        wanted: LogFilter,
        *,
        poll_s: float = 0.5,
        lookback_s: float = 5.0,
        seen: Sequence[int] = (),
    ) -> None:
        self.db = db
        self.wanted = wanted
        self.poll_s = poll_s
        self.lookback_s = lookback_s
        self._low: int | None = None
        self._marks: deque[tuple[float, int]] = deque()
        self._seen: set[int] = set(seen)

    def skip(self, seqs: Sequence[int]) -> None:
        """Never hand out these records (a reader showed them already, from ``query_logs``)."""
        self._seen.update(seqs)

    async def start(self) -> None:
        """Begin at the records stored from now on (those in ``seen`` are never handed out). A reader
        that shows recent records first starts the follower *before* it queries them, then ``skip``s
        them: a record stored in between is then shown once, not never."""
        top = await self.db.run(last_seq)
        self._low = top
        self._marks.append((time.monotonic(), top))

    async def poll(self) -> list[StoredLog]:
        """The matching records stored since the last poll (oldest first)."""
        if self._low is None:
            await self.start()
        assert self._low is not None
        rows, top = await self.db.run(logs_after, self.wanted, self._low)
        fresh = [row for row in rows if row.seq not in self._seen]
        self._seen.update(row.seq for row in fresh)
        now = time.monotonic()
        self._marks.append((now, top))
        while len(self._marks) > 1 and self._marks[1][0] <= now - self.lookback_s:
            self._marks.popleft()
        if self._marks[0][0] <= now - self.lookback_s and self._marks[0][1] > self._low:
            self._low = self._marks[0][1]
            self._seen = {seq for seq in self._seen if seq > self._low}
        if len(rows) >= MAX_LIMIT:  # more are waiting: continue after the last one handed out
            self._low = max(self._low, rows[-1].seq)
        return fresh

    async def follow(self, stop: asyncio.Event | None = None) -> AsyncIterator[StoredLog]:
        """Async iterator over new records until ``stop`` is set (poll every ``poll_s``)."""
        while stop is None or not stop.is_set():
            for row in await self.poll():
                yield row
            await asyncio.sleep(self.poll_s)
