"""Pass a runtime's stdout/stderr through to the pod's stderr, one prefixed line at a time."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

LogSink = Callable[[str], None]
"""Receives one complete output line (already prefixed, without the newline)."""

MAX_LINE = 1 << 20


def stderr_sink(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


async def pump_lines(stream: asyncio.StreamReader, prefix: Callable[[], str], sink: LogSink) -> None:
    """Copy ``stream`` to ``sink`` line by line as ``[prefix] line`` until EOF.

    ``prefix`` is called for every line, so a runtime that loads an app changes its prefix from
    then on. Over-long lines are cut into ``MAX_LINE`` pieces rather than dropped.
    """
    while True:
        try:
            raw = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                sink(f"[{prefix()}] {exc.partial.decode(errors='replace')}")
            return
        except asyncio.LimitOverrunError as exc:
            raw = await stream.readexactly(exc.consumed)
        text = raw.rstrip(b"\r\n").decode(errors="replace")
        sink(f"[{prefix()}] {text}")
