"""A tiny position-tracking JSON scanner: maps JSON pointers to ``(line, col)`` in the source text.

For an object member the position is that of its key (the opening quote); for an array item or the
root, that of the value's first character. Lines and columns are 1-based and count characters, as
``json.JSONDecodeError`` does. The text must already be valid JSON (``json.loads`` runs first).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable

_WS = re.compile(r"[ \t\n\r]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")


def escape_token(token: str) -> str:
    """One JSON-pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def pointer(parts: Iterable[str | int]) -> str:
    """The JSON pointer of a path such as ``["properties", "name", "maxLength"]``."""
    return "".join("/" + escape_token(str(p)) for p in parts)


class JsonPositions:
    """Positions of every value of one JSON document, by JSON pointer."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]
        self.offsets: dict[str, int] = {}
        end = self._value(self._skip(0), "")
        if self._skip(end) != len(text):
            raise ValueError("trailing data after the JSON document")

    def line_col(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def locate(self, ptr: str) -> tuple[int, int]:
        """``(line, col)`` of ``ptr``, or of its nearest ancestor that exists in the text."""
        while ptr and ptr not in self.offsets:
            ptr = ptr.rsplit("/", 1)[0]
        return self.line_col(self.offsets.get(ptr, 0))

    def _skip(self, i: int) -> int:
        match = _WS.match(self._text, i)
        return match.end() if match else i

    def _value(self, i: int, ptr: str, key_offset: int | None = None) -> int:
        self.offsets[ptr] = i if key_offset is None else key_offset
        ch = self._text[i : i + 1]
        if ch == "{":
            return self._object(i + 1, ptr)
        if ch == "[":
            return self._array(i + 1, ptr)
        match = (_STRING if ch == '"' else _SCALAR).match(self._text, i)
        if match is None:
            raise ValueError(f"unexpected character at offset {i}")
        return match.end()

    def _object(self, i: int, ptr: str) -> int:
        i = self._skip(i)
        if self._text.startswith("}", i):
            return i + 1
        while True:
            match = _STRING.match(self._text, i)
            if match is None:
                raise ValueError(f"expected a key at offset {i}")
            key = json.loads(match.group())
            i = self._skip(match.end())
            if not self._text.startswith(":", i):
                raise ValueError(f"expected ':' at offset {i}")
            i = self._value(self._skip(i + 1), f"{ptr}/{escape_token(key)}", key_offset=match.start())
            i = self._skip(i)
            if self._text.startswith(",", i):
                i = self._skip(i + 1)
                continue
            if self._text.startswith("}", i):
                return i + 1
            raise ValueError(f"expected ',' or '}}' at offset {i}")

    def _array(self, i: int, ptr: str) -> int:
        i = self._skip(i)
        if self._text.startswith("]", i):
            return i + 1
        index = 0
        while True:
            i = self._skip(self._value(i, f"{ptr}/{index}"))
            index += 1
            if self._text.startswith(",", i):
                i = self._skip(i + 1)
                continue
            if self._text.startswith("]", i):
                return i + 1
            raise ValueError(f"expected ',' or ']' at offset {i}")
