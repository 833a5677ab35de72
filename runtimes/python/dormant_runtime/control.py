"""The runtime side of the sidecar control protocol (declared in ``dormant._control``).

Commands arrive as JSON lines on stdin (``Load``, ``Drain``); stdin closing also means drain, so a
runtime never outlives its sidecar. Events leave as JSON lines on the file descriptor named by
``DORMANT_CONTROL_FD``: ``standby`` (imports done), ``ready`` (subscribed), ``failed`` (then exit 1)
and ``drained`` (then exit 0).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from dormant._control import CONTROL_FD_ENV, Command, decode_command, encode_event


class EventChannel:
    """Writes events to the sidecar; silent when there is no sidecar."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    @classmethod
    def from_env(cls) -> EventChannel:
        raw = os.environ.get(CONTROL_FD_ENV)
        return cls(int(raw) if raw and raw.isdigit() else None)

    def emit(self, event: str, **fields: Any) -> None:
        if self._fd is None:
            return
        line = encode_event(event, **fields)
        try:
            os.write(self._fd, line)
        except OSError:
            self._fd = None


async def read_commands() -> asyncio.Queue[Command | None]:
    """A queue of parsed stdin commands; ``None`` is queued when stdin closes (lines that are not a
    command are skipped)."""
    queue: asyncio.Queue[Command | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def pump() -> None:
        while True:
            line = await reader.readline()
            if not line:
                await queue.put(None)
                return
            command = decode_command(line)
            if command is not None:
                await queue.put(command)

    task = asyncio.create_task(pump())
    _keep.add(task)
    return queue


_keep: set[asyncio.Task[None]] = set()
