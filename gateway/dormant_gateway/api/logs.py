"""``GET /api/v1/functions/{name}/logs``: a function's log records, and new ones as they arrive.

The records are those the pods captured from the function's runtimes (``dormant_catalog.function_logs``,
in the seed's format: ``timestamp``, ``level``, ``requestId``, ``functionName``, ``version``,
``message``, ``duration``, ``traceId``, ``spanId`` ...). Reading them takes the ``read`` role and a
function that exists; every query names that one function, so no record of another can be in the
answer. Query parameters: ``version`` (``3`` or ``v3``), ``since`` (``10m``, ``2h``, ``7d`` or a
time with a zone), ``callId``, ``level`` (that level and above), ``limit`` (the newest ones, at most
1000, default 100).

``follow=true`` answers as NDJSON (``application/x-ndjson``): the newest ``limit`` records, then each
new record as it is stored (the database is polled every ``FOLLOW_POLL_S``), and an empty line every
``KEEPALIVE_S`` while nothing comes, until the client goes away. At most ``MAX_FOLLOWERS`` streams per
gateway process; more are answered 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dormant.errors import NotFound, Unavailable, ValidationError
from dormant_catalog import CatalogUnavailable
from dormant_catalog import function_logs as log_sql
from dormant_catalog.gateway import functions as function_sql
from dormant_telemetry.logs import LEVELS, dumps, level_name

from ..auth import Action
from ..inputs import check_text, version_number
from .common import authorize, int_param, json_response, service_name, state

FOLLOW_POLL_S = 0.5
KEEPALIVE_S = 15.0
MAX_FOLLOWERS = 64
MAX_CALL_ID_CHARS = 512
NDJSON = "application/x-ndjson"

_followers = [0]
"""Streams open in this process."""


def log_filter(request: Request, name: str) -> log_sql.LogFilter:
    """The query parameters as a filter on ``name``'s records; ``ValidationError`` for a bad one."""
    query = request.query_params
    version = version_number(query["version"]) if query.get("version") else None
    since = log_sql.parse_since(check_text(query["since"], "since")) if query.get("since") else None
    call_id = query.get("callId") or None
    if call_id is not None and (len(call_id) > MAX_CALL_ID_CHARS or "\x00" in call_id):
        raise ValidationError(f"callId is at most {MAX_CALL_ID_CHARS} characters, without NUL")
    severity = None
    if query.get("level"):
        level = level_name(query["level"], default="")
        if not level:
            raise ValidationError(f"level must be one of {', '.join(LEVELS)}")
        severity = log_sql.SEVERITY[level]
    return log_sql.LogFilter(name, version=version, since=since, call_id=call_id, min_severity=severity)


async def function_logs(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    gateway = state(request)
    wanted = log_filter(request, name)
    limit = int_param(request, "limit", default=log_sql.DEFAULT_LIMIT, low=1, high=log_sql.MAX_LIMIT)
    follow = request.query_params.get("follow", "false").lower()
    if follow not in ("true", "false"):
        raise ValidationError("follow must be true or false")
    if await gateway.db.run(function_sql.get_function, name) is None:
        raise NotFound(f"no function {name!r}")
    if follow == "false":
        records = await gateway.db.run(log_sql.query_logs, wanted, limit=limit)
        return json_response({"function": name, "items": [r.record for r in records]})
    if _followers[0] >= MAX_FOLLOWERS:
        raise Unavailable(f"this gateway streams {MAX_FOLLOWERS} function logs already; try again later")
    follower = log_sql.LogFollower(gateway.db, wanted, poll_s=FOLLOW_POLL_S)
    await follower.start()  # before the recent records: one stored in between is shown once, not never
    recent = await gateway.db.run(log_sql.query_logs, wanted, limit=limit)
    follower.skip([r.seq for r in recent])
    return StreamingResponse(
        _stream(follower, recent),
        media_type=NDJSON,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(follower: log_sql.LogFollower, recent: list[log_sql.StoredLog]) -> AsyncIterator[bytes]:
    _followers[0] += 1
    try:
        if recent:
            yield b"".join(dumps(r.record).encode() + b"\n" for r in recent)
        last_sent = time.monotonic()
        while True:
            try:
                rows = await follower.poll()
            except CatalogUnavailable:
                rows = []  # the stream stays open; the records are read when the catalog is back
            if rows:
                yield b"".join(dumps(r.record).encode() + b"\n" for r in rows)
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= KEEPALIVE_S:
                yield b"\n"  # keeps proxies from closing an idle stream; readers skip empty lines
                last_sent = time.monotonic()
            await asyncio.sleep(follower.poll_s)
    finally:
        _followers[0] -= 1
