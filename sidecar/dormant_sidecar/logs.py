"""A runtime's stdout/stderr, line by line: shown on the pod's stderr and captured as log records.

``pump_output`` reads one of a runtime's pipes and hands each line, with its ``Origin`` (the runtime's
label, the service and version it serves once loaded, the stream), to an ``OutputSink``. The plain sink
(``prefixed``) writes ``[label] line``. ``LogCapture`` is the pod's: it turns each line into a record
(``dormant_telemetry.logs``: a JSON line field by field, any other line as its text at INFO on stdout
and ERROR on stderr), stamps it with whose output it is (``functionName`` and ``version`` are the
pod's word, never the runtime's: a function cannot write into another service's logs), shows it
on the pod's stderr in the pod's own log format and, for a runtime that serves a version, hands it to
the ``LogShipper`` (``log_shipper``), which publishes and stores it. Nothing here waits: a runtime's
output pipe is never held up by the broker or the database.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dormant_telemetry.logs import (
    Format,
    Stream,
    dumps,
    json_object,
    record_from_json,
    record_from_text,
    text_line,
)

LogSink = Callable[[str], None]
"""Receives one complete output line (already prefixed, without the newline)."""

MAX_LINE = 1 << 20


@dataclass(frozen=True, slots=True)
class Origin:
    """Whose output a line is: the runtime's label (``svc v3``, ``standby 1234``), the service and
    version it serves (None while it stands by) and the pipe."""

    label: str
    service: str | None
    version: int | None
    stream: Stream


OutputSink = Callable[[Origin, str], None]
"""Receives one line of a runtime's output (without the newline) and where it came from."""

Ship = Callable[[str, int, dict[str, Any]], None]
"""Takes one record of a service's version for publishing and storing; must not block."""


def stderr_sink(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def prefixed(sink: LogSink) -> OutputSink:
    """An output sink that writes ``[label] line`` to ``sink``."""
    return lambda origin, text: sink(f"[{origin.label}] {text}")


async def pump_output(stream: asyncio.StreamReader, origin: Callable[[], Origin], sink: OutputSink) -> None:
    """Hand ``stream`` to ``sink`` line by line until EOF.

    ``origin`` is called for every line, so a runtime that loads an app is known by its service from
    then on. Over-long lines are cut into ``MAX_LINE`` pieces rather than dropped.
    """
    while True:
        try:
            raw = await stream.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                sink(origin(), exc.partial.decode(errors="replace"))
            return
        except asyncio.LimitOverrunError as exc:
            raw = await stream.readexactly(exc.consumed)
        sink(origin(), raw.rstrip(b"\r\n").decode(errors="replace"))


async def pump_lines(stream: asyncio.StreamReader, prefix: Callable[[], str], sink: LogSink) -> None:
    """Copy ``stream`` to ``sink`` line by line as ``[prefix] line`` until EOF (``pump_output`` with
    the plain sink)."""
    await pump_output(stream, lambda: Origin(prefix(), None, None, "stdout"), prefixed(sink))


class LogCapture:
    """The pod's output sink: each line of a runtime becomes a record, shown on ``display`` in
    ``fmt`` and, when the runtime serves a version, handed to ``ship``."""

    def __init__(self, pod_id: str, display: LogSink, fmt: Format, ship: Ship | None = None) -> None:
        self.pod_id = pod_id
        self.display = display
        self.fmt = fmt
        self.ship = ship
        # logId: unique per record (a random prefix per pod process, then a counter), so a reader that
        # gets a record both live and from the store shows it once.
        self._prefix = secrets.token_hex(6)
        self._counter = itertools.count(1)

    def __call__(self, origin: Origin, text: str) -> None:
        now = time.time()
        data = json_object(text)
        if data is None:
            record = record_from_text(text, origin.stream, now=now)
        else:
            record = record_from_json(data, origin.stream, now=now)
        if origin.service is not None and origin.version is not None:
            record["functionName"] = origin.service
            record["version"] = f"v{origin.version}"
        record["podId"] = self.pod_id
        record["logId"] = f"{self._prefix}-{next(self._counter):x}"
        if self.fmt == "json":
            self.display(dumps(record))
        elif data is None:
            self.display(f"[{origin.label}] {text}")
        else:
            self.display(f"[{origin.label}] {text_line(record, service=False)}")
        if self.ship is not None and origin.service is not None and origin.version is not None:
            self.ship(origin.service, origin.version, record)
