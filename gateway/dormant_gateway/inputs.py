"""Strict parsing of what a request carries, shared by every endpoint.

- Numbers: ASCII digits only (``str.isdigit`` and ``int`` also accept other scripts' digits, ' 3',
  '+3', '3_0').
- Text that may reach Postgres: no NUL (U+0000); Postgres refuses it in ``text`` and ``jsonb``, so a
  request carrying one is a client error (400), refused before it reaches any query. The middleware
  here checks the path and the query string of every request; ``check_json_text`` checks a JSON body.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from dormant.errors import ValidationError

from .http_errors import error_response

MAX_VERSION = 2**31 - 1
_UINT = re.compile(r"[0-9]{1,10}", re.ASCII)
_DECIMAL = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,9})?", re.ASCII)
# ``\u0000`` preceded by an even number of backslashes is an escaped NUL inside a JSON string.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def parse_uint(text: str, what: str, *, low: int = 0, high: int = MAX_VERSION) -> int:
    """``text`` as an integer from ``low`` to ``high`` written in ASCII digits, else ``ValidationError``."""
    if not _UINT.fullmatch(text) or not low <= int(text) <= high:
        raise ValidationError(f"{what} must be an integer from {low} to {high} in digits 0-9")
    return int(text)


def parse_decimal(text: str, what: str) -> float:
    """``text`` as a non-negative decimal number in ASCII digits (no sign, exponent, nan or inf)."""
    if not _DECIMAL.fullmatch(text):
        raise ValidationError(f"{what} must be a number such as 2 or 2.5, in digits 0-9")
    return float(text)


def version_number(value: Any, what: str = "version") -> int:
    """A version given as ``3``, ``"3"`` or ``"v3"``: from 1 to 2**31-1, ASCII digits only."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValidationError(f"invalid {what} {value!r}: a positive integer such as 3 or v3")
    text = str(value)
    text = text[1:] if text.startswith("v") else text
    if not _UINT.fullmatch(text) or not 1 <= int(text) <= MAX_VERSION:
        raise ValidationError(f"invalid {what} {value!r}: a positive integer such as 3 or v3")
    return int(text)


def has_nul(text: str) -> bool:
    return "\x00" in text


def check_text(text: str, what: str) -> str:
    if "\x00" in text:
        raise ValidationError(f"{what} contains a NUL character (U+0000)")
    return text


def check_json_text(raw: bytes | str) -> None:
    """Refuse JSON whose strings or keys hold U+0000 (written ``\\u0000``; a raw NUL is not JSON)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if b"u0000" in data and _JSON_NUL.search(data):
        raise ValidationError("the JSON holds a NUL character (\\u0000), which cannot be stored")


class RefuseNul:
    """ASGI middleware: 400 for a request whose path or query string holds a NUL (``%00``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope.get("path", "")
            query: bytes = scope.get("query_string", b"")
            if "\x00" in path or b"\x00" in unquote_to_bytes(query):
                where = "path" if "\x00" in path else "query string"
                response = error_response(ValidationError(f"the {where} contains a NUL character (%00)"))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
