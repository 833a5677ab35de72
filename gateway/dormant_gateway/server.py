"""The HTTP server's own limits: how long a request may take to arrive, and how many connections.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``) and answers 503 beyond
``limit_concurrency``, but nothing bounds the time a client takes to send a request: a client that
sends half a request line or header and then nothing holds its connection forever (200 such clients
held theirs for over 35 s). ``guarded_h11`` returns uvicorn's h11 protocol with two more rules:

- read timeout: a request (request line, headers and body) must have arrived completely within
  ``read_timeout_s`` of its first byte (or of the connection opening). A request still incomplete then
  is answered ``408`` when its head had not arrived yet, and the connection is closed either way (a
  handler waiting for the body sees the client disconnect).
- connection cap: beyond ``max_connections`` open connections, a new connection gets ``503`` and is
  closed at once instead of waiting in the pool.
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def _with_length(head: bytes, body: bytes) -> bytes:
    return head + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body


_TIMEOUT_RESPONSE = _with_length(
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n",
    b'{"type":"RequestTimeout","message":"the request did not arrive in time","details":null}',
)
_BUSY_RESPONSE = _with_length(
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"retry-after: 1\r\n",
    b'{"type":"Unavailable","message":"too many open connections","details":null}',
)


class GuardedH11Protocol(H11Protocol):
    read_timeout_s: float = 10.0
    max_connections: int = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_BUSY_RESPONSE)
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._read_timer is None and self._between_requests():
            self._arm()  # the first bytes of a new request on a kept-alive connection
        super().data_received(data)
        if self._request_complete():
            self._disarm()

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _request_complete(self) -> bool:
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete and not cycle.more_body

    def _arm(self) -> None:
        self._disarm()
        self._read_timer = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.transport.is_closing():
            return
        if self.conn.our_state is h11.IDLE and self.conn.their_state is h11.IDLE:
            # The request's head has not arrived (and no response is under way): say why.
            self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()


def guarded_h11(*, read_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request read timeout and a cap on open connections."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {"read_timeout_s": read_timeout_s, "max_connections": max_connections},
    )
