"""``CallStore``: the ``call_results`` table, which makes a callId run its handler at most once.

A runtime *claims* a callId before running its handler: the claim inserts a ``running`` row owned by
the runtime under a lease, or finds the row there already: ``ok``/``error`` (finished: answer with the
stored response) or ``running`` (someone else runs it: wait). A ``running`` row whose lease expired
belongs to a runtime that died and is taken over. Completion is fenced: only the current owner may
store a response. Every operation takes a batch, so a busy runtime pays one round trip per batch.

The store keeps its own two connections (claims; everything else) rather than a pool: it is on the
hot path of every call. They commit with ``synchronous_commit = off``: a claim or a stored answer is
coordination state that lives for a day, and waiting for a WAL flush on each would double a call's
latency on a durable server. A database *crash* (not a restart) can forget the last few hundred
milliseconds of them; answers written with a handler's writes (``complete_in``) commit in the
handler's own, fully durable transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg.rows import TupleRow

from .db import Conn, mapped_errors

Row = TupleRow

DEFAULT_LEASE_S = 5.0
DEFAULT_TTL_S = 24 * 3600.0

# Take every callId that is free or whose owner's lease expired; the ones not returned exist already.
_CLAIM = """
INSERT INTO call_results AS r
  (app_name, call_id, status, owner, lease_expires_at, version, created_at, expires_at)
SELECT %(app)s, call_id, 'running', %(owner)s, now() + make_interval(secs => %(lease)s::float8),
       %(version)s, now(), now() + make_interval(secs => %(ttl)s::float8)
FROM unnest(%(ids)s::text[]) AS call_id
ON CONFLICT (app_name, call_id) DO UPDATE
  SET owner = EXCLUDED.owner, lease_expires_at = EXCLUDED.lease_expires_at, version = EXCLUDED.version,
      attempts = r.attempts + 1
  WHERE r.status = 'running' AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now())
RETURNING r.call_id, r.attempts
"""

_COMPLETE = """
UPDATE call_results AS r
SET status = v.status, response = v.response, owner = NULL, lease_expires_at = NULL, finished_at = now()
FROM unnest(%(ids)s::text[], %(statuses)s::text[], %(responses)s::bytea[]) AS v(call_id, status, response)
WHERE r.app_name = %(app)s AND r.call_id = v.call_id AND r.owner = %(owner)s AND r.status = 'running'
RETURNING r.call_id
"""

_COMPLETE_ONE = """
UPDATE call_results
SET status = %(status)s, response = %(response)s, owner = NULL, lease_expires_at = NULL, finished_at = now()
WHERE app_name = %(app)s AND call_id = %(id)s AND owner = %(owner)s AND status = 'running'
RETURNING call_id
"""

_READ = """
SELECT call_id, status, response, (lease_expires_at IS NULL OR lease_expires_at < now()) AS expired
FROM call_results WHERE app_name = %(app)s AND call_id = ANY(%(ids)s::text[])
"""


@dataclass(frozen=True, slots=True)
class CallState:
    """What a claim (or a read) found for one callId."""

    kind: Literal["run", "done", "running", "absent"]
    """``run``: ours now, run the handler; ``done``: finished, ``ok`` and ``response`` hold the answer;
    ``running``: another live runtime runs it; ``absent``: no row (it was released)."""
    ok: bool | None = None
    response: bytes | None = None
    attempts: int = 0
    lease_expired: bool = False


class CallStore:
    def __init__(
        self,
        url: str,
        *,
        app_name: str,
        owner: str,
        version: int | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        ttl_s: float = DEFAULT_TTL_S,
        connect_timeout_s: float = 5.0,
    ) -> None:
        self.url = url
        self.app_name = app_name
        self.owner = owner
        self.version = version
        self.lease_s = lease_s
        self.ttl_s = ttl_s
        self._connect_timeout_s = connect_timeout_s
        self._claims: Conn | None = None
        self._other: Conn | None = None
        self._claims_lock = asyncio.Lock()
        self._other_lock = asyncio.Lock()

    async def _connect(self) -> Conn:
        with mapped_errors():
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout_s))
            )
            await conn.execute("SET synchronous_commit = off")
            return conn

    async def open(self) -> None:
        self._claims = await self._connect()
        self._other = await self._connect()

    async def close(self) -> None:
        for conn in (self._claims, self._other):
            if conn is not None:
                await conn.close()
        self._claims = self._other = None

    async def _run(self, which: Literal["claims", "other"], sql: str, params: dict[str, object]) -> list[Row]:
        """Run one statement; a broken connection raises ``CatalogUnavailable`` and is replaced next time."""
        lock = self._claims_lock if which == "claims" else self._other_lock
        async with lock:
            conn = self._claims if which == "claims" else self._other
            if conn is None or conn.closed:
                conn = await self._connect()
                if which == "claims":
                    self._claims = conn
                else:
                    self._other = conn
            with mapped_errors():
                cur = await conn.execute(sql, params, prepare=True)
                return await cur.fetchall() if cur.description else []

    async def claim(self, call_ids: Sequence[str]) -> dict[str, CallState]:
        unique = list(dict.fromkeys(call_ids))
        rows = await self._run(
            "claims",
            _CLAIM,
            {
                "ids": unique,
                "app": self.app_name,
                "owner": self.owner,
                "lease": self.lease_s,
                "ttl": self.ttl_s,
                "version": self.version,
            },
        )
        found = {str(call_id): CallState("run", attempts=int(attempts)) for call_id, attempts in rows}
        existing = [call_id for call_id in unique if call_id not in found]
        if existing:  # duplicates of finished or running calls: one more round trip, only for them
            for call_id, state in (await self._read("claims", existing)).items():
                found[call_id] = CallState("running") if state.kind == "absent" else state
        return found

    async def read(self, call_ids: Sequence[str]) -> dict[str, CallState]:
        """The current state of callIds (for a runtime waiting on another's run)."""
        return await self._read("other", call_ids)

    async def _read(self, which: Literal["claims", "other"], call_ids: Sequence[str]) -> dict[str, CallState]:
        rows = await self._run(which, _READ, {"app": self.app_name, "ids": list(call_ids)})
        found = {call_id: CallState("absent") for call_id in call_ids}
        for call_id, status, response, expired in rows:
            if status in ("ok", "error"):
                found[call_id] = CallState("done", ok=status == "ok", response=bytes(response or b""))
            else:
                found[call_id] = CallState("running", lease_expired=bool(expired))
        return found

    async def complete(self, results: Sequence[tuple[str, bool, bytes]]) -> set[str]:
        """Store finished responses; returns the callIds stored (those we still owned)."""
        if not results:
            return set()
        if len(results) == 1:
            call_id, ok, response = results[0]
            params = {"app": self.app_name, "owner": self.owner, "id": call_id, "response": response}
            rows = await self._run("other", _COMPLETE_ONE, {**params, "status": "ok" if ok else "error"})
            return {row[0] for row in rows}
        rows = await self._run(
            "other",
            _COMPLETE,
            {
                "app": self.app_name,
                "owner": self.owner,
                "ids": [r[0] for r in results],
                "statuses": ["ok" if r[1] else "error" for r in results],
                "responses": [r[2] for r in results],
            },
        )
        return {row[0] for row in rows}

    async def complete_in(self, conn: Conn, call_id: str, ok: bool, response: bytes) -> bool:
        """Store one response on ``conn``, inside the caller's open transaction (fenced like ``complete``).

        The handler's writes on ``conn`` and the stored answer then commit together, or not at all.
        """
        cur = await conn.execute(
            _COMPLETE,
            {
                "app": self.app_name,
                "owner": self.owner,
                "ids": [call_id],
                "statuses": ["ok" if ok else "error"],
                "responses": [response],
            },
        )
        return await cur.fetchone() is not None

    async def release(self, call_ids: Sequence[str]) -> None:
        """Forget our running claims (the call failed in a way a retry may fix), so a retry runs again."""
        if call_ids:
            await self._run(
                "other",
                "DELETE FROM call_results WHERE app_name = %(app)s AND call_id = ANY(%(ids)s::text[])"
                " AND owner = %(owner)s AND status = 'running'",
                {"app": self.app_name, "ids": list(call_ids), "owner": self.owner},
            )

    async def renew(self, call_ids: Sequence[str]) -> None:
        """Extend the leases of our running calls."""
        if call_ids:
            await self._run(
                "other",
                "UPDATE call_results SET lease_expires_at = now() + make_interval(secs => %(lease)s::float8)"
                " WHERE app_name = %(app)s AND call_id = ANY(%(ids)s::text[]) AND owner = %(owner)s"
                " AND status = 'running'",
                {"app": self.app_name, "ids": list(call_ids), "owner": self.owner, "lease": self.lease_s},
            )

    async def purge_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired results (of every service); returns how many."""
        rows = await self._run(
            "other",
            "DELETE FROM call_results WHERE ctid IN"
            " (SELECT ctid FROM call_results WHERE expires_at < now() LIMIT %(limit)s) RETURNING 1",
            {"limit": limit},
        )
        return len(rows)
