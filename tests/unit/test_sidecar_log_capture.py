"""``LogCapture``: a runtime's output lines as records, stamped by the pod (never by the runtime), shown
in the pod's format and shipped only for a runtime that serves a version; and the log topics."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from dormant import wire
from dormant_sidecar.logs import LogCapture, Origin, pump_output

SERVING = Origin("user-service v2", "user-service", 2, "stderr")
STANDBY = Origin("standby 77", None, None, "stdout")
RUNTIME_LINE = orjson.dumps(
    {
        "timestamp": "2025-11-23T12:00:00.000Z",
        "level": "INFO",
        "requestId": "c-1",
        "functionName": "other-service",  # a runtime may claim anything; the pod knows better
        "version": "v7",
        "message": "created user u-1",
        "logger": "dormant.fn.user-service.createUser",
    }
).decode()


def capture(fmt: str = "json") -> tuple[LogCapture, list[str], list[tuple[str, int, dict[str, Any]]]]:
    shown: list[str] = []
    shipped: list[tuple[str, int, dict[str, Any]]] = []
    sink = LogCapture(
        "pod-a", shown.append, "json" if fmt == "json" else "text", ship=lambda *a: shipped.append(a)
    )
    return sink, shown, shipped


def test_a_serving_runtimes_line_is_stamped_shown_and_shipped() -> None:
    sink, shown, shipped = capture()
    sink(SERVING, RUNTIME_LINE)
    [(service, version, record)] = shipped
    assert (service, version) == ("user-service", 2)
    assert record["functionName"] == "user-service" and record["version"] == "v2"
    assert record["requestId"] == "c-1" and record["message"] == "created user u-1"
    assert record["podId"] == "pod-a" and record["stream"] == "stderr"
    assert orjson.loads(shown[0]) == record  # the pod's stderr shows the same record, as JSON


def test_standby_output_is_shown_but_never_shipped() -> None:
    sink, shown, shipped = capture()
    sink(STANDBY, "importing things")
    assert shipped == []
    record = orjson.loads(shown[0])
    assert record["message"] == "importing things" and record["functionName"] is None


def test_text_display_keeps_the_runtime_label() -> None:
    sink, shown, shipped = capture("text")
    sink(SERVING, "a plain print")
    sink(SERVING, RUNTIME_LINE)
    assert shown[0] == "[user-service v2] a plain print"
    assert shown[1].startswith("[user-service v2] ") and shown[1].endswith("INFO [c-1] created user u-1")
    assert len(shipped) == 2 and shipped[0][2]["level"] == "ERROR"  # a plain line on stderr


def test_every_record_gets_its_own_log_id() -> None:
    sink, _, shipped = capture()
    for _ in range(3):
        sink(SERVING, "x")
    other, _, other_shipped = capture()
    other(SERVING, "x")
    ids = [r["logId"] for _, _, r in shipped + other_shipped]
    assert len(set(ids)) == 4


async def test_pump_output_passes_the_origin_of_each_line() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"one\n" + RUNTIME_LINE.encode() + b"\nlast")
    reader.feed_eof()
    sink, _, shipped = capture()
    await pump_output(reader, lambda: SERVING, sink)
    assert [r["message"] for _, _, r in shipped] == ["one", "created user u-1", "last"]


def test_log_topics() -> None:
    assert wire.logs_topic("user-service", 3) == "mesh/logs/user-service/v3"
    assert wire.logs_filter("user-service") == "mesh/logs/user-service/+"
    assert wire.logs_filter("user-service", 3) == "mesh/logs/user-service/v3"
    assert wire.parse_logs_topic("mesh/logs/user-service/v3") == ("user-service", 3)
    for other in ("mesh/logs/user-service", "mesh/logs/user-service/3", "mesh/stats/a/v1", "mesh/logs//v1"):
        assert wire.parse_logs_topic(other) is None
