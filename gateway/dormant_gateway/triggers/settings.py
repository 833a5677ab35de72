"""Validation of trigger requests (HTTP, cron, queue, stream) into the stored config, as pure functions."""

from __future__ import annotations

import re
from typing import Any

from dormant.errors import ValidationError

from .schedule import ScheduleError, check_timezone, parse_schedule

# Matched with fullmatch ("$" would also match before a trailing newline); ASCII only.
FUNCTION = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}", re.ASCII)
VERSION_TOPIC = re.compile(r"v[0-9]+", re.ASCII)
QUEUE = re.compile(r"[A-Za-z0-9_.:-]{1,200}", re.ASCII)
PATH_SEGMENT = re.compile(r"[A-Za-z0-9._~-]{1,128}|\{[A-Za-z_][A-Za-z0-9_]{0,63}\}|\{proxy\+\}", re.ASCII)
ALIAS = re.compile(r"\$LATEST|[a-z][a-z0-9-]{0,63}", re.ASCII)
STREAM = re.compile(r"[A-Za-z0-9_-]{1,200}", re.ASCII)
SUBJECT_TOKEN = re.compile(r"[A-Za-z0-9_:$-]{1,128}", re.ASCII)
MAX_SUBJECT = 255
START_POSITIONS = ("latest", "start")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _fail(path: str, message: str) -> ValidationError:
    return ValidationError(
        f"invalid trigger: {path}: {message}", {"errors": [{"path": path, "message": message}]}
    )


def _int(config: dict[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(f"/config/{key}", f"an integer from {low} to {high}")
    return value


def _number(config: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = config.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(f"/config/{key}", f"a number from {low:g} to {high:g}")
    return float(value)


def _only(config: dict[str, Any], allowed: set[str]) -> None:
    for key in config:
        if key not in allowed:
            raise _fail(f"/config/{key}", "unknown setting")


def validate_trigger(body: dict[str, Any]) -> tuple[str, str, dict[str, Any], bool]:
    """``{"type", "function", "config", "enabled"?}`` -> (kind, target function, config, enabled)."""
    for key in body:
        if key not in ("type", "function", "config", "enabled"):
            raise _fail(f"/{key}", "unknown field")
    kind = body.get("type")
    if kind not in ("http", "cron", "queue", "stream"):
        raise _fail("/type", "one of http, cron, queue, stream")
    target = body.get("function")
    if not isinstance(target, str) or not FUNCTION.fullmatch(target) or VERSION_TOPIC.fullmatch(target):
        raise _fail("/function", "the function inside the service, e.g. createUser")
    config = body.get("config", {})
    if not isinstance(config, dict):
        raise _fail("/config", "an object")
    enabled = body.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail("/enabled", "true or false")
    common = {"alias", "version"}
    routing = _routing(config)
    if kind == "cron":
        _only(config, common | {"schedule", "timezone", "input", "maxAttempts"})
        schedule = config.get("schedule")
        timezone = config.get("timezone", "UTC")
        if not isinstance(schedule, str):
            raise _fail("/config/schedule", "a cron expression or rate(N unit)")
        try:
            check_timezone(timezone)
        except ScheduleError as exc:
            raise _fail("/config/timezone", str(exc)) from None
        try:
            parse_schedule(schedule, timezone)
        except ScheduleError as exc:
            raise _fail("/config/schedule", str(exc)) from None
        payload = config.get("input", {})
        if not isinstance(payload, dict):
            raise _fail("/config/input", "an object")
        stored = {
            "schedule": schedule.strip(),
            "timezone": timezone,
            "input": payload,
            "maxAttempts": _int(config, "maxAttempts", 3, 1, 20),
        }
    elif kind == "queue":
        _only(config, common | {"queue", "batchSize", "maxAttempts", "backoffSeconds", "deadLetterQueue"})
        queue = config.get("queue")
        if not isinstance(queue, str) or not QUEUE.fullmatch(queue):
            raise _fail("/config/queue", "a RabbitMQ queue name")
        dlq = config.get("deadLetterQueue", f"{queue}.dlq")
        if not isinstance(dlq, str) or not QUEUE.fullmatch(dlq) or dlq == queue:
            raise _fail("/config/deadLetterQueue", "a queue name other than the source queue")
        stored = {
            "queue": queue,
            "batchSize": _int(config, "batchSize", 10, 1, 100),
            "maxAttempts": _int(config, "maxAttempts", 3, 1, 20),
            "backoffSeconds": _number(config, "backoffSeconds", 1.0, 0.0, 300.0),
            "deadLetterQueue": dlq,
        }
    elif kind == "stream":
        stored = _stream(config, common)
    else:
        _only(config, common | {"methods", "path", "cors", "auth"})
        stored = {
            "methods": _methods(config.get("methods", ["ANY"])),
            "path": _path(config.get("path")),
            "cors": _cors(config.get("cors")),
            "auth": _auth(config.get("auth", "jwt")),
        }
    return kind, target, {**stored, **routing}, enabled


def _stream(config: dict[str, Any], common: set[str]) -> dict[str, Any]:
    """A stream trigger (NATS JetStream): the stream, the subject filter, batching, start and failures."""
    _only(
        config,
        common
        | {
            "stream",
            "subject",
            "batchSize",
            "batchWindowMs",
            "startPosition",
            "maxAttempts",
            "backoffSeconds",
            "deadLetterSubject",
        },
    )
    stream = config.get("stream")
    if not isinstance(stream, str) or not STREAM.fullmatch(stream):
        raise _fail("/config/stream", "a JetStream stream name (letters, digits, _ and -)")
    subject = _subject(config.get("subject"), "/config/subject", wildcards=True)
    if "deadLetterSubject" in config:
        dead = _subject(config["deadLetterSubject"], "/config/deadLetterSubject", wildcards=False)
    elif _has_wildcards(subject):
        raise _fail("/config/deadLetterSubject", "required when the subject has wildcards (* or >)")
    else:
        dead = f"{subject}.dlq"
        if len(dead) > MAX_SUBJECT:
            raise _fail("/config/deadLetterSubject", "required: the subject is too long to append .dlq")
    if subject_matches(subject, dead):
        # The trigger would consume its own dead letters again.
        raise _fail("/config/deadLetterSubject", f"a subject that {subject!r} does not match")
    position = config.get("startPosition", "latest")
    if position not in START_POSITIONS:
        raise _fail("/config/startPosition", "latest or start")
    return {
        "stream": stream,
        "subject": subject,
        "batchSize": _int(config, "batchSize", 10, 1, 100),
        "batchWindowMs": _int(config, "batchWindowMs", 50, 0, 60_000),
        "startPosition": position,
        "maxAttempts": _int(config, "maxAttempts", 3, 1, 20),
        "backoffSeconds": _number(config, "backoffSeconds", 1.0, 0.0, 300.0),
        "deadLetterSubject": dead,
    }


def _subject(value: Any, path: str, *, wildcards: bool) -> str:
    """A NATS subject: dot-separated tokens; with ``wildcards``, ``*`` tokens and a final ``>``."""
    what = "a NATS subject such as orders.created" + (" (* and a final > allowed)" if wildcards else "")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_SUBJECT:
        raise _fail(path, what)
    tokens = value.split(".")
    for index, token in enumerate(tokens):
        if wildcards and (token == "*" or (token == ">" and index == len(tokens) - 1)):
            continue
        if not SUBJECT_TOKEN.fullmatch(token):
            raise _fail(path, f"{what}; invalid token {token[:40]!r}")
    return value


def _has_wildcards(subject: str) -> bool:
    return any(token in ("*", ">") for token in subject.split("."))


def subject_matches(pattern: str, subject: str) -> bool:
    """True when the NATS subject filter ``pattern`` matches the literal ``subject``."""
    wanted, given = pattern.split("."), subject.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or (token != "*" and token != given[index]):
            return False
    return len(given) == len(wanted)


def _routing(config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    alias, version = config.get("alias"), config.get("version")
    if alias is not None and version is not None:
        raise _fail("/config/alias", "give either alias or version")
    if alias is not None:
        if not isinstance(alias, str) or not ALIAS.fullmatch(alias):
            raise _fail("/config/alias", "an alias name")
        out["alias"] = alias
    if version is not None:
        if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 2**31 - 1:
            raise _fail("/config/version", "a positive integer")
        out["version"] = version
    return out


def _methods(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise _fail("/config/methods", "a list of HTTP methods (or ANY)")
    methods = []
    for item in value:
        if not isinstance(item, str) or item.upper() not in (*METHODS, "ANY"):
            raise _fail("/config/methods", f"one of {', '.join(METHODS)}, ANY")
        methods.append(item.upper())
    return sorted(set(methods))


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 512:
        raise _fail("/config/path", "a path such as /orders/{id} or /api/{proxy+}")
    segments = [s for s in value.split("/")[1:]]
    if value != "/":
        for index, segment in enumerate(segments):
            if segment in (".", "..") or not PATH_SEGMENT.fullmatch(segment):
                raise _fail("/config/path", f"invalid segment {segment!r}")
            if segment == "{proxy+}" and index != len(segments) - 1:
                raise _fail("/config/path", "{proxy+} must be the last segment")
    return value


def _cors(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail("/config/cors", "an object")
    allowed = {"allowOrigins", "allowMethods", "allowHeaders", "maxAge", "allowCredentials"}
    for key in value:
        if key not in allowed:
            raise _fail(f"/config/cors/{key}", "unknown setting")
    out: dict[str, Any] = {}
    for key in ("allowOrigins", "allowMethods", "allowHeaders"):
        items = value.get(key, ["*"] if key != "allowHeaders" else ["content-type", "authorization"])
        if not isinstance(items, list) or not all(isinstance(i, str) and 0 < len(i) <= 256 for i in items):
            raise _fail(f"/config/cors/{key}", "a list of strings")
        out[key] = items
    max_age = value.get("maxAge", 600)
    if not isinstance(max_age, int) or isinstance(max_age, bool) or not 0 <= max_age <= 86400:
        raise _fail("/config/cors/maxAge", "seconds from 0 to 86400")
    credentials = value.get("allowCredentials", False)
    if not isinstance(credentials, bool):
        raise _fail("/config/cors/allowCredentials", "true or false")
    out["maxAge"] = max_age
    out["allowCredentials"] = credentials
    return out


def _auth(value: Any) -> str:
    if value not in ("jwt", "none"):
        raise _fail("/config/auth", "jwt or none")
    return str(value)
