"""``CallStore``: the ``call_results`` table, which makes a callId run its handler at most once.

A call is keyed by (service, function, callId) and carries a *fingerprint*: the sha256 of its
canonical input (``fingerprint``). A runtime *claims* a call before running its handler: the claim
inserts a ``running`` row owned by the runtime under a lease, or finds the row there already:
``ok``/``error`` (finished: answer with the stored response), ``running`` (someone else runs it:
wait), or a row with another fingerprint (``conflict``: the callId was reused for another input). A
``running`` row whose lease expired belongs to a runtime that died and is taken over; so is one that
this runtime (the same ``owner``) still holds after losing track of it. Completion is fenced: only
the current owner may store a response. Every operation takes a batch, so a busy runtime pays one
round trip per batch.

Every statement that locks rows locks them in one order, (function, callId): a claim by inserting in
that order, the others through a ``SELECT … ORDER BY … FOR UPDATE``. Two runtimes handling batches
that share callIds (a client retry during a redeploy) then wait for each other instead of
deadlocking. Deadlocks and serialization failures that happen anyway (they roll the statement back)
are retried here, a few times, before ``CatalogUnavailable`` is raised.

The store keeps its own two connections (claims; everything else) rather than a pool: it is on the
hot path of every call. They commit with ``synchronous_commit = off``: a claim or a stored answer is
coordination state that lives for a day, and waiting for a WAL flush on each would double a call's
latency on a durable server. A database *crash* (not a restart) can forget the last few hundred
milliseconds of them; answers written with a handler's writes (``complete_in``) commit in the
handler's own, fully durable transaction.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
import psycopg
from psycopg.rows import TupleRow

from .db import CONFLICT_SQLSTATES, Conn, mapped_errors
from .errors import InvalidCatalogRequest

Row = TupleRow

DEFAULT_LEASE_S = 5.0
DEFAULT_TTL_S = 24 * 3600.0
MAX_CALL_ID_BYTES = 512
"""The longest callId (UTF-8) the store keeps: the text form of 256 bytes of Correlation Data (hex)."""
CONFLICT_RETRIES = 5
"""How often one statement is retried after losing a deadlock or a serialization check."""
CONFLICT_BACKOFF_S = 0.005

CallKey = tuple[str, str]
"""(function, callId): what identifies a call within one service."""

# Take every call that is free, whose owner's lease expired or that is ours already, unless its input
# differs; the ones not returned exist already. Rows are inserted (and conflicting rows locked) in key
# order, the one lock order of every statement here.
_CLAIM = """
INSERT INTO call_results AS r
  (app_name, function, call_id, fingerprint, status, owner, lease_expires_at, version, created_at,
   expires_at)
SELECT %(app)s, k.function, k.call_id, k.fingerprint, 'running', %(owner)s,
       now() + make_interval(secs => %(lease)s::float8), %(version)s, now(),
       now() + make_interval(secs => %(ttl)s::float8)
FROM unnest(%(functions)s::text[], %(ids)s::text[], %(fingerprints)s::bytea[])
  AS k(function, call_id, fingerprint)
ORDER BY k.function, k.call_id
ON CONFLICT (app_name, function, call_id) DO UPDATE
  SET owner = EXCLUDED.owner, lease_expires_at = EXCLUDED.lease_expires_at, version = EXCLUDED.version,
      attempts = r.attempts + 1, fingerprint = COALESCE(r.fingerprint, EXCLUDED.fingerprint)
  WHERE r.status = 'running'
    AND (r.owner = EXCLUDED.owner OR r.lease_expires_at IS NULL OR r.lease_expires_at < now())
    AND (r.fingerprint IS NULL OR r.fingerprint = EXCLUDED.fingerprint)
RETURNING r.function, r.call_id, r.attempts
"""

# Our running rows among the keys, locked in key order (``{skip}``: SKIP LOCKED or nothing).
_OURS_LOCKED = """
locked AS (
  SELECT r.function, r.call_id FROM call_results AS r
  JOIN unnest(%(functions)s::text[], %(ids)s::text[]) AS k(function, call_id)
    ON r.function = k.function AND r.call_id = k.call_id
  WHERE r.app_name = %(app)s AND r.owner = %(owner)s AND r.status = 'running'
  ORDER BY r.function, r.call_id
  FOR UPDATE OF r{skip}
)
"""

_MATCH_LOCKED = """
r.app_name = %(app)s AND r.function = locked.function AND r.call_id = locked.call_id
AND r.owner = %(owner)s AND r.status = 'running'
"""

_COMPLETE = (
    "WITH"
    + _OURS_LOCKED.format(skip="")
    + """, v AS (
  SELECT * FROM unnest(%(functions)s::text[], %(ids)s::text[], %(statuses)s::text[], %(responses)s::bytea[])
    AS v(function, call_id, status, response)
)
UPDATE call_results AS r
SET status = v.status, response = v.response, owner = NULL, lease_expires_at = NULL, finished_at = now()
FROM locked JOIN v ON v.function = locked.function AND v.call_id = locked.call_id
WHERE"""
    + _MATCH_LOCKED
    + "RETURNING r.function, r.call_id"
)

_COMPLETE_ONE = """
UPDATE call_results
SET status = %(status)s, response = %(response)s, owner = NULL, lease_expires_at = NULL, finished_at = now()
WHERE app_name = %(app)s AND function = %(function)s AND call_id = %(id)s AND owner = %(owner)s
  AND status = 'running'
RETURNING function, call_id
"""

_RELEASE = (
    "WITH" + _OURS_LOCKED.format(skip="") + "DELETE FROM call_results AS r USING locked WHERE" + _MATCH_LOCKED
)

# A row locked by someone else right now is skipped: its lease is renewed on the next round.
_RENEW = (
    "WITH"
    + _OURS_LOCKED.format(skip=" SKIP LOCKED")
    + """UPDATE call_results AS r SET lease_expires_at = now() + make_interval(secs => %(lease)s::float8)
FROM locked WHERE"""
    + _MATCH_LOCKED
)

_READ = """
SELECT r.function, r.call_id, r.status, r.response, r.fingerprint,
       (r.lease_expires_at IS NULL OR r.lease_expires_at < now()) AS expired,
       r.owner IS NOT DISTINCT FROM %(owner)s AS mine
FROM call_results AS r
JOIN unnest(%(functions)s::text[], %(ids)s::text[]) AS k(function, call_id)
  ON r.function = k.function AND r.call_id = k.call_id
WHERE r.app_name = %(app)s
"""

_PURGE = """
DELETE FROM call_results AS r USING (
  SELECT app_name, function, call_id FROM call_results WHERE expires_at < now()
  ORDER BY app_name, function, call_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED
) AS old
WHERE r.app_name = old.app_name AND r.function = old.function AND r.call_id = old.call_id
RETURNING 1
"""


def fingerprint(params: Any, *, caller: str | None = None) -> bytes:
    """The sha256 of ``params`` as canonical JSON (keys sorted at every level, no spaces), and of the
    verified caller's subject when there is one.

    Two inputs get the same fingerprint exactly when they decode to the same JSON value (1 and 1.0
    are different values) and come from the same caller: another user reusing a callId is a conflict,
    never the first caller's stored answer.
    """
    try:
        canonical = orjson.dumps(params, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # e.g. an integer beyond 64 bits, which orjson cannot write
        canonical = json.dumps(
            params, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8", "surrogatepass")
    if caller is not None:
        canonical += b"\x00caller:" + caller.encode("utf-8", "surrogatepass")
    return hashlib.sha256(canonical).digest()


def call_id_problem(call_id: str) -> str | None:
    """Why the store cannot keep ``call_id`` (too long, or a NUL Postgres text cannot hold), or None."""
    try:
        size = len(call_id.encode("utf-8"))
    except UnicodeEncodeError:
        return "a callId must be valid UTF-8 text"
    if size > MAX_CALL_ID_BYTES:
        return f"a callId is at most {MAX_CALL_ID_BYTES} bytes (as text), got {size}"
    if "\x00" in call_id:
        return "a callId must not contain NUL characters"
    return None


@dataclass(frozen=True, slots=True)
class Claim:
    """A call to claim: its key and the fingerprint of its input."""

    function: str
    call_id: str
    fingerprint: bytes

    @property
    def key(self) -> CallKey:
        return (self.function, self.call_id)


@dataclass(frozen=True, slots=True)
class CallState:
    """What a claim (or a read) found for one call."""

    kind: Literal["run", "done", "running", "absent", "conflict"]
    """``run``: ours now, run the handler; ``done``: finished, ``ok`` and ``response`` hold the answer;
    ``running``: another live runtime runs it; ``absent``: no row (it was released); ``conflict``: the
    stored call has another input (``claim`` only; a read reports the row and its ``fingerprint``)."""
    ok: bool | None = None
    response: bytes | None = None
    attempts: int = 0
    lease_expired: bool = False
    fingerprint: bytes | None = None
    """The stored call's input fingerprint (None for a row written before fingerprints were kept)."""
    mine: bool = False
    """A ``running`` row owned by this store's owner."""

    def matches(self, fingerprint: bytes) -> bool:
        """False when the stored call had another input."""
        return self.fingerprint is None or self.fingerprint == fingerprint


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
        """Run one statement (autocommit); retry it when it lost a deadlock or a serialization check.

        A broken connection raises ``CatalogUnavailable`` and is replaced next time. A statement that
        failed because of a conflict was rolled back, so running it again is always safe; after
        ``CONFLICT_RETRIES`` tries the conflict is raised as ``CatalogUnavailable`` too.
        """
        lock = self._claims_lock if which == "claims" else self._other_lock
        async with lock:
            for attempt in range(CONFLICT_RETRIES + 1):
                conn = self._claims if which == "claims" else self._other
                if conn is None or conn.closed:
                    conn = await self._connect()
                    if which == "claims":
                        self._claims = conn
                    else:
                        self._other = conn
                with mapped_errors():
                    try:
                        cur = await conn.execute(sql, params, prepare=True)
                        return await cur.fetchall() if cur.description else []
                    except psycopg.Error as exc:
                        if exc.sqlstate not in CONFLICT_SQLSTATES or attempt == CONFLICT_RETRIES:
                            raise
                # Jittered, growing backoff: the two contenders should not meet again at once.
                await asyncio.sleep(CONFLICT_BACKOFF_S * (2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")  # pragma: no cover

    def _key_params(self, keys: Sequence[CallKey]) -> dict[str, object]:
        return {
            "app": self.app_name,
            "owner": self.owner,
            "functions": [k[0] for k in keys],
            "ids": [k[1] for k in keys],
        }

    async def claim(self, claims: Sequence[Claim]) -> dict[CallKey, CallState]:
        """Claim calls; per key: ``run``, ``done``, ``running`` or ``conflict`` (another input).

        A key given twice is claimed once, with the first one's fingerprint.
        """
        first: dict[CallKey, Claim] = {}
        for claim in claims:
            problem = call_id_problem(claim.call_id)
            if problem is not None:
                raise InvalidCatalogRequest(problem)
            first.setdefault(claim.key, claim)
        unique = list(first.values())
        if not unique:
            return {}
        rows = await self._run(
            "claims",
            _CLAIM,
            {
                "functions": [c.function for c in unique],
                "ids": [c.call_id for c in unique],
                "fingerprints": [c.fingerprint for c in unique],
                "app": self.app_name,
                "owner": self.owner,
                "lease": self.lease_s,
                "ttl": self.ttl_s,
                "version": self.version,
            },
        )
        found = {
            (str(function), str(call_id)): CallState(
                "run", attempts=int(attempts), fingerprint=first[(str(function), str(call_id))].fingerprint
            )
            for function, call_id, attempts in rows
        }
        existing = [key for key in first if key not in found]
        if existing:  # duplicates of finished, running or reused calls: one more round trip, only for them
            for key, state in (await self._read("claims", existing)).items():
                if state.kind == "absent":  # released in between: the caller waits and claims again
                    state = CallState("running")
                if not state.matches(first[key].fingerprint):
                    state = CallState("conflict", fingerprint=state.fingerprint)
                found[key] = state
        return found

    async def read(self, keys: Sequence[CallKey]) -> dict[CallKey, CallState]:
        """The current state of calls (for a runtime waiting on another's run)."""
        return await self._read("other", keys)

    async def _read(
        self, which: Literal["claims", "other"], keys: Sequence[CallKey]
    ) -> dict[CallKey, CallState]:
        rows = await self._run(which, _READ, self._key_params(keys))
        found = {key: CallState("absent") for key in keys}
        for function, call_id, status, response, fp, expired, mine in rows:
            fp = bytes(fp) if fp is not None else None
            key = (str(function), str(call_id))
            if status in ("ok", "error"):
                found[key] = CallState(
                    "done", ok=status == "ok", response=bytes(response or b""), fingerprint=fp
                )
            else:
                found[key] = CallState(
                    "running", lease_expired=bool(expired), fingerprint=fp, mine=bool(mine)
                )
        return found

    async def complete(self, results: Sequence[tuple[CallKey, bool, bytes]]) -> set[CallKey]:
        """Store finished responses; returns the keys stored (those we still owned)."""
        if not results:
            return set()
        if len(results) == 1:
            (function, call_id), ok, response = results[0]
            rows = await self._run(
                "other",
                _COMPLETE_ONE,
                {
                    "app": self.app_name,
                    "owner": self.owner,
                    "function": function,
                    "id": call_id,
                    "status": "ok" if ok else "error",
                    "response": response,
                },
            )
        else:
            rows = await self._run(
                "other",
                _COMPLETE,
                {
                    **self._key_params([r[0] for r in results]),
                    "statuses": ["ok" if r[1] else "error" for r in results],
                    "responses": [r[2] for r in results],
                },
            )
        return {(str(row[0]), str(row[1])) for row in rows}

    async def complete_in(self, conn: Conn, key: CallKey, ok: bool, response: bytes) -> bool:
        """Store one response on ``conn``, inside the caller's open transaction (fenced like ``complete``).

        The handler's writes on ``conn`` and the stored answer then commit together, or not at all.
        """
        cur = await conn.execute(
            _COMPLETE_ONE,
            {
                "app": self.app_name,
                "owner": self.owner,
                "function": key[0],
                "id": key[1],
                "status": "ok" if ok else "error",
                "response": response,
            },
        )
        return await cur.fetchone() is not None

    async def release(self, keys: Sequence[CallKey]) -> None:
        """Forget our running claims (the call failed in a way a retry may fix), so a retry runs again."""
        if keys:
            await self._run("other", _RELEASE, self._key_params(keys))

    async def renew(self, keys: Sequence[CallKey]) -> None:
        """Extend the leases of our running calls."""
        if keys:
            await self._run("other", _RENEW, {**self._key_params(keys), "lease": self.lease_s})

    async def purge_expired(self, limit: int = 1000) -> int:
        """Delete up to ``limit`` expired results (of every service); returns how many."""
        return len(await self._run("other", _PURGE, {"limit": limit}))
