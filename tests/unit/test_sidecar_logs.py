"""Runtime output pass-through: prefixes, partial last lines, over-long lines."""

from __future__ import annotations

import asyncio

from dormant_sidecar.logs import pump_lines


async def pump(data: bytes, *, limit: int = 1 << 16, label: list[str] | None = None) -> list[str]:
    reader = asyncio.StreamReader(limit=limit)
    reader.feed_data(data)
    reader.feed_eof()
    lines: list[str] = []
    names = label or ["svc v1"]
    await pump_lines(reader, lambda: names[0], lines.append)
    return lines


async def test_lines_are_prefixed() -> None:
    assert await pump(b"one\ntwo\r\n\nthree") == [
        "[svc v1] one",
        "[svc v1] two",
        "[svc v1] ",
        "[svc v1] three",
    ]


async def test_invalid_utf8_is_replaced() -> None:
    assert await pump(b"caf\xe9\n") == ["[svc v1] caf\ufffd"]


async def test_over_long_lines_are_cut_not_dropped() -> None:
    lines = await pump(b"x" * 40 + b"\nok\n", limit=16)
    assert "".join(line.removeprefix("[svc v1] ") for line in lines[:-1]) == "x" * 40
    assert lines[-1] == "[svc v1] ok"


async def test_prefix_is_read_per_line() -> None:
    reader = asyncio.StreamReader()
    names = ["standby 7"]
    lines: list[str] = []
    task = asyncio.create_task(pump_lines(reader, lambda: names[0], lines.append))
    reader.feed_data(b"booting\n")
    await asyncio.sleep(0.01)
    names[0] = "users v4"
    reader.feed_data(b"serving\n")
    reader.feed_eof()
    await task
    assert lines == ["[standby 7] booting", "[users v4] serving"]
