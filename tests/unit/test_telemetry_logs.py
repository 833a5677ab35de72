"""``dormant_telemetry.logs``: the JSON record of a log line, text on a terminal, the settings, and the
reading side (a runtime's output line back into a record)."""

from __future__ import annotations

import datetime
import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from dormant import Context
from dormant_telemetry.logs import (
    CORE_FIELDS,
    MAX_CLOCK_SKEW_S,
    MAX_EXTRA_FIELDS,
    MAX_MESSAGE_CHARS,
    JsonFormatter,
    choose_format,
    configure_logging,
    iso_timestamp,
    parse_level,
    parse_line,
    text_line,
)

NOW = 1_763_899_200.0  # 2025-11-23T12:00:00Z


def formatted(logger_call: Any, *, component: str = "runtime") -> dict[str, Any]:
    """Run ``logger_call(logger)`` on a fresh logger that writes through ``JsonFormatter``; the record."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter(component))
    logger = logging.getLogger(f"test.telemetry.{id(out)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        logger_call(logger)
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    record: dict[str, Any] = orjson.loads(lines[0])
    return record


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Restore the root logger's handlers and level after a test that configures them."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


# --------------------------------------------------------------------------- writing


def test_a_ctx_logger_line_has_the_seeds_fields() -> None:
    ctx = Context(call_id="c-123", service="user-service", function="createUser", version=2)

    def log(logger: logging.Logger) -> None:
        ctx._logger = None
        adapter = ctx.logger
        adapter.logger = logger  # the call's logger, writing to this test's handler
        adapter.info("created user %s", "u-1")

    record = formatted(log)
    assert list(record)[: len(CORE_FIELDS)] == list(CORE_FIELDS)
    assert record["requestId"] == "c-123"
    assert record["functionName"] == "user-service"
    assert record["version"] == "v2"
    assert record["function"] == "createUser"
    assert record["message"] == "created user u-1"  # without the "[c-123] " plain-logging prefix
    assert record["level"] == "INFO"
    assert record["duration"] is None and record["traceId"] is None and record["spanId"] is None
    assert record["component"] == "runtime"
    moment = datetime.datetime.fromisoformat(record["timestamp"])
    assert moment.tzinfo is not None and record["timestamp"].endswith("Z")
    assert abs(moment.timestamp() - datetime.datetime.now(datetime.UTC).timestamp()) < 60


def test_platform_records_levels_durations_and_exceptions() -> None:
    def log(logger: logging.Logger) -> None:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.warning("took a while", exc_info=True, extra={"duration_ms": 145.25, "call_id": "x"})

    record = formatted(log, component="gateway")
    assert record["level"] == "WARNING"
    assert record["duration"] == 145.25
    assert record["requestId"] == "x"
    assert record["functionName"] is None and record["version"] is None
    assert "RuntimeError: boom" in record["exception"] and "Traceback" in record["exception"]
    assert record["component"] == "gateway"


def test_a_platform_record_about_a_call_carries_its_call_id() -> None:
    record = formatted(
        lambda logger: logger.info("[%s] refused call of %s: %s", "c-42", "getUser", "no token")
    )
    assert record["requestId"] == "c-42" and record["message"] == "refused call of getUser: no token"
    plain = formatted(lambda logger: logger.info("[%s] is not a call id here", 7))
    assert plain["requestId"] is None  # only a text first argument is a callId


def test_trace_and_span_ids_come_from_the_recording_span() -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("function.execute") as span:
        record = formatted(lambda logger: logger.info("inside"))
        context = span.get_span_context()
    assert record["traceId"] == format(context.trace_id, "032x")
    assert record["spanId"] == format(context.span_id, "016x")
    outside = formatted(lambda logger: logger.info("outside"))
    assert outside["traceId"] is None and outside["spanId"] is None


def test_a_huge_message_is_cut_and_says_so_and_nul_is_replaced() -> None:
    record = formatted(lambda logger: logger.info("a\x00" + "x" * (MAX_MESSAGE_CHARS + 10)))
    assert record["message"].startswith("a\ufffdx")
    assert record["message"].endswith("[12 more characters cut]")


# --------------------------------------------------------------------------- settings


def test_format_is_text_on_a_terminal_and_json_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DORMANT_LOG_FORMAT", raising=False)
    assert choose_format(None, Tty()) == "text"
    assert choose_format(None, io.StringIO()) == "json"
    monkeypatch.setenv("DORMANT_LOG_FORMAT", "json")
    assert choose_format(None, Tty()) == "json"
    monkeypatch.setenv("DORMANT_LOG_FORMAT", "text")
    assert choose_format(None, io.StringIO()) == "text"
    assert choose_format("auto", io.StringIO()) == "json"  # an argument wins over the variable
    monkeypatch.setenv("DORMANT_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="DORMANT_LOG_FORMAT must be one of auto, json, text"):
        choose_format(None, io.StringIO())


def test_configure_logging_json_and_text(monkeypatch: pytest.MonkeyPatch, root_logging: None) -> None:
    monkeypatch.delenv("DORMANT_LOG_FORMAT", raising=False)
    monkeypatch.setenv("DORMANT_LOG_LEVEL", "warning")
    out = io.StringIO()
    assert configure_logging("controller", stream=out) == "json"
    logging.getLogger("dormant.controller").info("not shown: below WARNING")
    logging.getLogger("dormant.controller").warning("shown")
    [line] = out.getvalue().splitlines()
    record = orjson.loads(line)
    assert record["message"] == "shown" and record["component"] == "controller"
    assert record["logger"] == "dormant.controller"

    tty = Tty()
    assert configure_logging("gateway", "debug", stream=tty) == "text"
    logging.getLogger("dormant.gateway").debug("plain %s", "text")
    assert tty.getvalue().rstrip().endswith("DEBUG dormant.gateway: plain text")
    assert len(logging.getLogger().handlers) == 1  # replaced, not added


def test_bad_levels_are_refused(monkeypatch: pytest.MonkeyPatch, root_logging: None) -> None:
    assert parse_level("warn") == "WARNING" and parse_level("Critical") == "CRITICAL"
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        parse_level("loud")
    monkeypatch.setenv("DORMANT_LOG_LEVEL", "verbose")
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("runtime", stream=io.StringIO())


# --------------------------------------------------------------------------- reading


def test_a_json_line_is_read_field_by_field() -> None:
    line = orjson.dumps(
        {
            "timestamp": "2025-11-23T12:00:01.500Z",
            "level": "warn",
            "requestId": "c-1",
            "functionName": "someone-else",
            "version": "v9",
            "message": "hello",
            "duration": 12,
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "spanId": "b7ad6b7169203331",
            "logger": "dormant.fn.svc.f",
            "podId": "forged",
            "logId": "forged",
            "nested": {"a": [1, 2]},
        }
    ).decode()
    record = parse_line(line, "stderr", now=NOW)
    assert record["timestamp"] == "2025-11-23T12:00:01.500Z"
    assert record["level"] == "WARNING"
    assert record["requestId"] == "c-1" and record["message"] == "hello" and record["duration"] == 12
    assert record["traceId"] == "0af7651916cd43dd8448eb211c80319c" and record["spanId"] == "b7ad6b7169203331"
    # Whose record it is and its id are the reader's to say, never the line's.
    assert record["functionName"] is None and record["version"] is None
    assert "podId" not in record and "logId" not in record
    assert record["logger"] == "dormant.fn.svc.f"
    assert record["nested"] == '{"a":[1,2]}'  # extras are kept as scalars
    assert record["stream"] == "stderr"


def test_other_lines_become_records_by_stream() -> None:
    printed = parse_line("just a print()", "stdout", now=NOW)
    assert printed["level"] == "INFO" and printed["message"] == "just a print()"
    assert printed["timestamp"] == iso_timestamp(NOW) == "2025-11-23T12:00:00.000Z"
    assert printed["requestId"] is None and printed["stream"] == "stdout"
    traceback = parse_line('  File "x.py", line 1, in <module>', "stderr", now=NOW)
    assert traceback["level"] == "ERROR" and traceback["message"].startswith('  File "x.py"')
    for not_an_object in ("42", "[1, 2]", '"text"', "{not json}", "null"):
        record = parse_line(not_an_object, "stdout", now=NOW)
        assert record["message"] == not_an_object and record["level"] == "INFO"


def test_bad_fields_are_normalized_not_trusted() -> None:
    line = orjson.dumps(
        {
            "timestamp": "1970-01-01T00:00:00Z",  # far off the reader's clock
            "level": "LOUD",
            "message": {"structured": True},
            "duration": "slow",
            "traceId": "xyz",
            "spanId": "0000000000000000",
            "requestId": "r" * 2000,
            **{f"extra{i}": i for i in range(MAX_EXTRA_FIELDS + 5)},
        }
    ).decode()
    record = parse_line(line, "stdout", now=NOW)
    assert record["timestamp"] == iso_timestamp(NOW)
    assert record["level"] == "INFO"
    assert record["message"] == '{"structured":true}'
    assert record["duration"] is None and record["traceId"] is None and record["spanId"] is None
    assert len(record["requestId"]) < 600
    assert sum(key.startswith("extra") for key in record) == MAX_EXTRA_FIELDS
    late = iso_timestamp(NOW + MAX_CLOCK_SKEW_S + 5)
    skewed = parse_line(orjson.dumps({"timestamp": late, "message": "m"}).decode(), "stdout", now=NOW)
    assert skewed["timestamp"] == iso_timestamp(NOW)
    naive = parse_line('{"timestamp": "2025-11-23T12:00:01", "message": "m"}', "stdout", now=NOW)
    assert naive["timestamp"] == iso_timestamp(NOW)  # no zone: not a time the reader can place


def test_what_the_formatter_writes_the_reader_reads_back() -> None:
    ctx = Context(call_id="c-9", service="svc", function="f", version=1)

    def log(logger: logging.Logger) -> None:
        ctx.logger.logger = logger
        ctx.logger.error("it failed: %d", 3)

    written = formatted(log)
    read = parse_line(orjson.dumps(written).decode(), "stderr", now=datetime.datetime.now().timestamp())
    for key in ("timestamp", "level", "requestId", "message", "duration", "traceId", "spanId"):
        assert read[key] == written[key], key
    assert read["function"] == "f" and read["logger"] == written["logger"]


def test_text_line() -> None:
    record = parse_line(
        '{"timestamp": "2025-11-23T12:00:00.250Z", "level": "ERROR", "requestId": "c-1", "message": "m",'
        ' "duration": 145, "exception": "Traceback...\\nValueError: x\\n"}',
        "stderr",
        now=NOW,
    )
    record.update(functionName="user-service", version="v2")
    assert text_line(record, local_time=False) == (
        "2025-11-23 12:00:00.250 ERROR user-service v2 [c-1] m (145 ms)\nTraceback...\nValueError: x"
    )
    assert text_line(record, local_time=False, service=False).startswith(
        "2025-11-23 12:00:00.250 ERROR [c-1] m"
    )
