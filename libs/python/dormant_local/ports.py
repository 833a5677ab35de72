"""Local TCP ports: pick a free one, wait until one accepts connections."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True when a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


async def wait_until(
    ready: Callable[[], bool],
    *,
    within: float,
    failed: Callable[[], str | None] = lambda: None,
    interval: float = 0.01,
) -> None:
    """Poll ``ready`` until it is true; raise when ``failed`` returns a reason or ``within`` s pass."""
    deadline = time.monotonic() + within
    while True:
        if ready():
            return
        reason = failed()
        if reason is not None:
            raise RuntimeError(reason)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not ready after {within:.1f} s")
        await asyncio.sleep(interval)
