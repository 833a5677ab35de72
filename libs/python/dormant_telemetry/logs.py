"""Log records of Dormant's processes and functions: one JSON object per line in the seed's format, or
plain text on a terminal; and the reading side, a line of a runtime's output turned back into a record.

A record (``record_of``, ``JsonFormatter``) always has these keys, ``null`` when unknown:

* ``timestamp``: ISO 8601 in UTC with milliseconds (``2025-11-23T12:00:00.123Z``);
* ``level``: ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL``;
* ``requestId``: the callId of the call the record belongs to (``ctx.logger`` sets it);
* ``functionName``: the service (what the gateway's ``/api/v1/functions/{name}`` calls a function);
* ``version``: the service's version as ``v{N}``;
* ``message``: the text, without the ``[callId]`` prefix ``ctx.logger`` puts on it for plain logging;
* ``duration``: milliseconds, for a record that reports something that took time;
* ``traceId``, ``spanId``: the OpenTelemetry span recording when the record was made (hex);

and, when they apply, ``function`` (the ``@function`` of the service), ``logger`` (the Python logger),
``component`` (``runtime``, ``sidecar``, ``gateway``, ``controller``), ``exception`` (a traceback).
The sidecar adds ``podId``, ``stream`` and ``logId`` when it captures a runtime's output
(``parse_line``); ``logId`` is unique per record, so a reader that gets one record twice (stored and
live) shows it once.

``configure_logging`` installs the formatter for a process: JSON when its stderr is not a terminal,
plain text on one; ``DORMANT_LOG_FORMAT`` (``json``, ``text``, ``auto``) and ``DORMANT_LOG_LEVEL``
override. A leaf module: it imports no other Dormant package.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

import orjson
from opentelemetry import trace

Format = Literal["json", "text"]
Stream = Literal["stdout", "stderr"]

FORMAT_ENV = "DORMANT_LOG_FORMAT"
LEVEL_ENV = "DORMANT_LOG_LEVEL"
FORMATS = ("auto", "json", "text")

LEVELS: Mapping[str, int] = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}
_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL", "ERR": "ERROR", "TRACE": "DEBUG", "NOTSET": "DEBUG"}

CORE_FIELDS = (
    "timestamp",
    "level",
    "requestId",
    "functionName",
    "version",
    "message",
    "duration",
    "traceId",
    "spanId",
)
"""The keys every record has (``null`` when unknown), in the order they are written."""
SIDECAR_FIELDS = ("podId", "stream", "logId")
"""Keys only the sidecar sets on a captured record; a runtime's own values for them are replaced."""

MAX_MESSAGE_CHARS = 32 * 1024
"""A longer message is cut (and says so): one record is one row and one MQTT message."""
MAX_EXTRA_FIELDS = 32
MAX_EXTRA_CHARS = 4096
MAX_CALL_ID_CHARS = 512
MAX_CLOCK_SKEW_S = 300.0
"""A captured record whose own timestamp is further than this from the sidecar's clock (or none, or
not a time) gets the sidecar's: retention and ``--since`` must not trust a runtime's clock."""

_HEX = frozenset("0123456789abcdef")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


# --------------------------------------------------------------------------- levels and times


def level_name(value: object, default: str = "INFO") -> str:
    """``value`` as one of ``LEVELS`` (``warn`` -> ``WARNING``); ``default`` for anything else."""
    if not isinstance(value, str):
        return default
    name = value.strip().upper()
    name = _ALIASES.get(name, name)
    return name if name in LEVELS else default


def parse_level(value: str) -> str:
    """A level a person typed (``--level warning``, ``DORMANT_LOG_LEVEL=debug``); ``ValueError`` if none."""
    name = level_name(value, default="")
    if not name:
        raise ValueError(f"unknown log level {value!r}: use one of {', '.join(LEVELS)}")
    return name


def iso_timestamp(epoch_s: float) -> str:
    """``2025-11-23T12:00:00.123Z``: the record's time in UTC, milliseconds."""
    moment = datetime.datetime.fromtimestamp(epoch_s, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_timestamp(value: object) -> datetime.datetime | None:
    """An ISO 8601 time with a zone (``Z`` or an offset) as an aware datetime; None for anything else."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def current_trace() -> tuple[str | None, str | None]:
    """The trace and span id (hex) of the OpenTelemetry span recording in this context, or (None, None)."""
    span = trace.get_current_span()
    context = span.get_span_context()
    if not context.is_valid or not span.is_recording():
        return None, None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


# --------------------------------------------------------------------------- writing


def _version_text(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return f"v{value}"
    if isinstance(value, str) and value:
        return value if value.startswith("v") else f"v{value}"
    return None


def _clip(text: str, limit: int) -> str:
    if "\x00" in text:  # Postgres text and jsonb cannot hold NUL
        text = text.replace("\x00", "\ufffd")
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters cut]"


def record_of(
    log: logging.LogRecord, component: str, formatter: logging.Formatter | None = None
) -> dict[str, Any]:
    """The JSON record for one ``logging`` record of ``component`` (see the module docstring)."""
    message = log.getMessage()
    call_id = getattr(log, "call_id", None)
    if call_id is None and isinstance(log.msg, str) and log.msg.startswith("[%s] ") and log.args:
        # Dormant's own records about a call are written "[callId] ..." (the convention ctx.logger
        # follows too): the first argument is the callId.
        first = log.args[0] if isinstance(log.args, tuple) else None
        call_id = first if isinstance(first, str) else None
    call_id = str(call_id) if call_id is not None else None
    if call_id is not None:
        message = message.removeprefix(f"[{call_id}] ")
    trace_id, span_id = current_trace()
    duration = getattr(log, "duration_ms", None)
    record: dict[str, Any] = {
        "timestamp": iso_timestamp(log.created),
        "level": level_name(log.levelname, "INFO"),
        "requestId": call_id,
        "functionName": getattr(log, "service", None),
        "version": _version_text(getattr(log, "version", None)),
        "message": _clip(message, MAX_MESSAGE_CHARS),
        "duration": _duration(duration),
        "traceId": trace_id,
        "spanId": span_id,
        "logger": log.name,
        "component": component,
    }
    function = getattr(log, "function", None)
    if isinstance(function, str):
        record["function"] = function
    formatter = formatter or logging.Formatter()
    if log.exc_info:
        record["exception"] = _clip(formatter.formatException(log.exc_info), MAX_MESSAGE_CHARS)
    elif log.exc_text:
        record["exception"] = _clip(log.exc_text, MAX_MESSAGE_CHARS)
    if log.stack_info:
        record["stack"] = _clip(formatter.formatStack(log.stack_info), MAX_MESSAGE_CHARS)
    return record


def _duration(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return round(float(value), 3)


def dumps(record: Mapping[str, Any]) -> str:
    """One record as one line of JSON (no newline)."""
    return orjson.dumps(record, default=str).decode()


class JsonFormatter(logging.Formatter):
    """Formats each ``logging`` record as one JSON line (``record_of``)."""

    def __init__(self, component: str) -> None:
        super().__init__()
        self.component = component

    def format(self, record: logging.LogRecord) -> str:
        return dumps(record_of(record, self.component, self))


def choose_format(fmt: str | None = None, stream: TextIO | None = None) -> Format:
    """``json`` or ``text``: ``fmt`` (or ``$DORMANT_LOG_FORMAT``), where ``auto`` (the default) means
    text on a terminal and JSON otherwise. ``ValueError`` for any other value."""
    wanted = (fmt if fmt is not None else os.environ.get(FORMAT_ENV, "") or "auto").strip().lower()
    if wanted not in FORMATS:
        raise ValueError(f"{FORMAT_ENV} must be one of {', '.join(FORMATS)}, not {wanted!r}")
    if wanted == "auto":
        target = stream if stream is not None else sys.stderr
        try:
            return "text" if target.isatty() else "json"
        except (AttributeError, ValueError):
            return "json"
    return "json" if wanted == "json" else "text"


def configure_logging(
    component: str, level: str | None = None, fmt: str | None = None, *, stream: TextIO | None = None
) -> Format:
    """Send the process's log records to ``stream`` (stderr) as JSON lines or plain text.

    ``level``: the given one, else ``$DORMANT_LOG_LEVEL``, else INFO; ``fmt``: see ``choose_format``.
    Replaces whatever handlers the root logger had. Returns the format chosen; ``ValueError`` for an
    unknown level or format (a setting is used or refused, never ignored).
    """
    name = parse_level(level if level is not None else os.environ.get(LEVEL_ENV, "") or "INFO")
    chosen = choose_format(fmt, stream)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(component) if chosen == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(LEVELS[name])
    return chosen


# --------------------------------------------------------------------------- reading


def _hex_id(value: object, length: int) -> str | None:
    if isinstance(value, str) and len(value) == length and set(value) <= _HEX and value.strip("0"):
        return value
    return None


def _extra_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _clip(value, MAX_EXTRA_CHARS)
    return _clip(orjson.dumps(value, default=str).decode(), MAX_EXTRA_CHARS)


def json_object(text: str) -> dict[str, Any] | None:
    """The JSON object a line holds, or None when it holds anything else (text, a JSON array, a number)."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        return None
    try:
        data = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def record_from_text(text: str, stream: Stream, *, now: float) -> dict[str, Any]:
    """A line that is not a JSON object (a ``print()``, a line of a traceback) as a record: the text is
    the message, at level INFO on stdout and ERROR on stderr, at the reader's time ``now``."""
    record: dict[str, Any] = dict.fromkeys(CORE_FIELDS)
    record.update(
        timestamp=iso_timestamp(now),
        level="ERROR" if stream == "stderr" else "INFO",
        message=_clip(text, MAX_MESSAGE_CHARS),
        stream=stream,
    )
    return record


def record_from_json(data: Mapping[str, Any], stream: Stream, *, now: float) -> dict[str, Any]:
    """A JSON object a process wrote as a record: the core fields checked and normalized, up to
    ``MAX_EXTRA_FIELDS`` others kept as scalars. ``functionName`` and ``version`` are left ``null``: only
    the reader knows whose output it is. A timestamp missing or off by more than ``MAX_CLOCK_SKEW_S``
    from ``now`` (the reader's clock) is replaced by ``now``."""
    default_level = "ERROR" if stream == "stderr" else "INFO"
    record: dict[str, Any] = dict.fromkeys(CORE_FIELDS)
    moment = parse_timestamp(data.get("timestamp"))
    if moment is None or abs(moment.timestamp() - now) > MAX_CLOCK_SKEW_S:
        record["timestamp"] = iso_timestamp(now)
    else:
        record["timestamp"] = iso_timestamp(moment.timestamp())
    record["level"] = level_name(data.get("level"), default_level)
    message = data.get("message")
    if message is None:
        message = data.get("msg", "")
    if not isinstance(message, str):
        message = orjson.dumps(message, default=str).decode()
    record["message"] = _clip(message, MAX_MESSAGE_CHARS)
    call_id = data.get("requestId")
    if isinstance(call_id, str) and call_id:
        record["requestId"] = _clip(call_id, MAX_CALL_ID_CHARS)
    record["duration"] = _duration(data.get("duration"))
    record["traceId"] = _hex_id(data.get("traceId"), 32)
    record["spanId"] = _hex_id(data.get("spanId"), 16)
    kept = 0
    for key, value in data.items():
        if key in record or key in SIDECAR_FIELDS or key == "msg" or not isinstance(key, str):
            continue
        if kept >= MAX_EXTRA_FIELDS or not key or len(key) > 64:
            continue
        record[key] = _extra_value(value)
        kept += 1
    record["stream"] = stream
    return record


def parse_line(text: str, stream: Stream, *, now: float) -> dict[str, Any]:
    """One line a process wrote on ``stream`` as a record (``now``: the reader's clock, epoch seconds):
    ``record_from_json`` for a JSON object, ``record_from_text`` for anything else."""
    data = json_object(text)
    if data is None:
        return record_from_text(text, stream, now=now)
    return record_from_json(data, stream, now=now)


def text_line(record: Mapping[str, Any], *, local_time: bool = True, service: bool = True) -> str:
    """A record as a person reads it: ``2025-11-23 12:00:00.123 INFO user-service v1 [callId] message``
    (``(145 ms)`` after it when there is a duration, the traceback on the lines after). ``local_time``:
    the time in this machine's zone rather than UTC; ``service``: show ``functionName`` and ``version``."""
    moment = parse_timestamp(record.get("timestamp"))
    if moment is None:
        shown_time = str(record.get("timestamp") or "-")
    else:
        moment = moment.astimezone() if local_time else moment.astimezone(datetime.UTC)
        shown_time = moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    parts = [shown_time, str(record.get("level") or "INFO")]
    if service:
        parts += [str(x) for x in (record.get("functionName"), record.get("version")) if x]
    if record.get("requestId"):
        parts.append(f"[{record['requestId']}]")
    parts.append(str(record.get("message") or ""))
    line = " ".join(parts)
    duration = record.get("duration")
    if isinstance(duration, int | float) and not isinstance(duration, bool):
        line += f" ({duration:g} ms)"
    for key in ("exception", "stack"):
        if isinstance(record.get(key), str) and record[key]:
            line += "\n" + str(record[key]).rstrip("\n")
    return line
