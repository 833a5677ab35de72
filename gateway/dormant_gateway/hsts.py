"""HTTP Strict Transport Security (RFC 6797): the ``Strict-Transport-Security`` response header.

A pure ASGI middleware (it does not buffer or re-encode bodies). On a connection whose ``scheme`` is
``https`` (uvicorn sets it for a TLS connection) it puts ``max-age=N; includeSubDomains`` on the
response head. On plain HTTP it adds nothing: a server must not send it there (RFC 6797 section 7.2)
and a browser ignores it (section 8.1), since a man in the middle could strip or forge it.

``app.create_app`` installs it first in the middleware list when the gateway serves HTTPS with a
max-age above 0, so it also marks the answers of the middleware after it (a NUL in the path) and of the
exception handlers. Not marked: the 500 for an unexpected error (Starlette sends it from its outermost
error middleware) and the server's own 408 and 503 (``server.py``, written on the socket before a
close). A browser keeps the policy it learned from any other response until max-age runs out.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"strict-transport-security"


class StrictTransportSecurity:
    """ASGI middleware: ``Strict-Transport-Security: max-age=<max_age_s>; includeSubDomains`` on every
    HTTPS response (replacing one a handler set, so the configured policy is the only one sent)."""

    def __init__(self, app: ASGIApp, *, max_age_s: int) -> None:
        if max_age_s < 0:
            raise ValueError(f"HSTS max-age must be 0 or more seconds, not {max_age_s}")
        self.app = app
        self.value = f"max-age={max_age_s}; includeSubDomains".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self.app(scope, receive, send)
            return

        async def send_with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != HEADER]
                message = {**message, "headers": [*headers, (HEADER, self.value)]}
            await send(message)

        await self.app(scope, receive, send_with_hsts)
