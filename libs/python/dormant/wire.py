"""The Dormant wire protocol: topics, call and response encoding, in one place.

Every Python component (SDK client, runtimes, gateway, CLI) builds and reads MQTT messages through
this module and nothing else. It is transport-agnostic: it speaks in topics, payload bytes and the
handful of MQTT 5 properties Dormant uses (response topic, correlation data, user properties,
message expiry), never in a client library's types.

Two request forms reach a service (see docs/wire-protocol.md):

* native MQTT 5: the payload is the function's input JSON; Response Topic and Correlation Data say
  where to answer; user properties carry ``deadline``, ``authorization`` and trace context;
* envelope (MQTT 3.1.1 friendly): ``{"messageId", "callId", "replyTo", "headers", "body":
  {"function", "parameters"}}`` on ``service/{svc}``; the answer comes back in the same shape.

``decode_call`` is total: whatever a client puts in a topic, payload or property, it returns a ``Call``
or raises ``CallRejected`` with a typed error, never anything else. Every property has one parsing rule
(docs/wire-protocol.md lists them). A reply destination that is not a plain topic under ``reply/``
(``reply_topic_problem``) is never published to: the call is rejected with nobody to answer.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import errors
from .callid import MAX_CALL_ID_BYTES, CallId
from .errors import DormantError, NotFound, ValidationError, error_from_payload
from .mqtt.codec import mqtt_string_problem

log = logging.getLogger("dormant.wire")

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
CONTENT_TYPE_JSON = "application/json"

PROP_STATUS = "status"
PROP_DEADLINE = "deadline"
PROP_AUTHORIZATION = "authorization"
PROP_TRACEPARENT = "traceparent"
PROP_TRACESTATE = "tracestate"
STATUS_OK = "ok"
STATUS_ERROR = "error"

REPLY_PREFIX = "reply/"
MAX_REPLY_TOPIC_BYTES = 1024
"""A reply topic is at most this many bytes of UTF-8 (a legitimate inbox is far shorter)."""
MAX_DEADLINE_DIGITS = 15
"""A ``deadline`` is 1 to 15 ASCII digits of epoch milliseconds (up to the year 33658)."""
MAX_TRACESTATE_BYTES = 512

_VERSION_SEGMENT = re.compile(r"^v([0-9]+)$")
_DEADLINE = re.compile(rf"[0-9]{{1,{MAX_DEADLINE_DIGITS}}}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

UserProperties = Sequence[tuple[str, str]]


# --------------------------------------------------------------------------- topics


def function_topic(service: str, function: str) -> str:
    """Calls that do not pick a version: served by the version ``live`` points at."""
    return f"service/{service}/{function}"


def version_topic(service: str, version: int, function: str) -> str:
    """Calls aimed at one version (after a weighted pick, or by the caller's choice)."""
    return f"service/{service}/v{version}/{function}"


def envelope_topic(service: str) -> str:
    """Seed-style envelope calls; the function is named inside the body."""
    return f"service/{service}"


def reply_topic(client_id: str, username: str | None = None) -> str:
    """The response topic a client puts on its calls: ``reply/{username}/{client_id}`` when it connects
    with a broker user name (a secured broker lets an account read only ``reply/{username}/#``),
    ``reply/{client_id}`` when it connects anonymously. ``ValueError`` for a user name or client id
    that is not one topic level."""
    for what, level in (("broker user name", username), ("client id", client_id)):
        if level is not None:
            problem = _inbox_level_problem(level)
            if problem is not None:
                raise ValueError(f"the {what} {level[:100]!r} cannot be an inbox topic level: {problem}")
    return f"reply/{username}/{client_id}" if username is not None else f"reply/{client_id}"


def reply_filter(client_id: str, username: str | None = None) -> str:
    """What a client subscribes to for its responses: its ``reply_topic`` and below."""
    return f"{reply_topic(client_id, username)}/#"


def _inbox_level_problem(level: str) -> str | None:
    if not level:
        return "it is empty"
    if "/" in level or "+" in level or "#" in level:
        return "it holds '/', '+' or '#'"
    return mqtt_string_problem(level)


def topic_mappings(service: str) -> dict[str, str]:
    """The topics a version of ``service`` answers on, recorded with the version in the catalog
    (``{function}`` and ``{version}`` are placeholders)."""
    return {
        "live": function_topic(service, "{function}"),
        "version": f"service/{service}/v{{version}}/{{function}}",
        "envelope": envelope_topic(service),
    }


_ROUTES_PREFIX = "mesh/routes/"
_STATS_PREFIX = "mesh/stats/"


def routes_topic(service: str) -> str:
    """``mesh/routes/{svc}`` (retained, by the controller): alias -> {version: weight}."""
    return _ROUTES_PREFIX + service


def parse_routes_topic(topic: str) -> str | None:
    """The service of a ``mesh/routes/{svc}`` topic; None for any other topic."""
    if not topic.startswith(_ROUTES_PREFIX):
        return None
    service = topic[len(_ROUTES_PREFIX) :]
    return service if service and "/" not in service else None


def stats_topic(service: str, version: int, pod_id: str) -> str:
    """``mesh/stats/{svc}/v{N}/{podId}``: one runtime's one-second window of numbers."""
    return f"{_STATS_PREFIX}{service}/v{version}/{pod_id}"


def stats_filter(service: str | None = None) -> str:
    """The filter for the stats of every service, or of every version and pod of ``service``."""
    return f"{_STATS_PREFIX}+/+/+" if service is None else f"{_STATS_PREFIX}{service}/+/+"


@dataclass(frozen=True, slots=True)
class StatsSource:
    """Who published a stats window: ``mesh/stats/{service}/v{version}/{pod_id}``."""

    service: str
    version: int
    pod_id: str


def parse_stats_topic(topic: str) -> StatsSource | None:
    """Read ``mesh/stats/{svc}/v{N}/{podId}``; None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[:2] != ["mesh", "stats"] or not parts[2] or not parts[4]:
        return None
    match = _VERSION_SEGMENT.match(parts[3])
    if match is None:
        return None
    return StatsSource(parts[2], int(match.group(1)), parts[4])


_LOGS_PREFIX = "mesh/logs/"


def logs_topic(service: str, version: int) -> str:
    """``mesh/logs/{svc}/v{N}``: one log record (a JSON object) of a runtime of ``service`` version
    ``version``, published by its pod's sidecar (QoS 0; the records are also stored in the catalog)."""
    return f"{_LOGS_PREFIX}{service}/v{version}"


def logs_filter(service: str, version: int | None = None) -> str:
    """The filter for the log records of every version of ``service``, or of one version."""
    return f"{_LOGS_PREFIX}{service}/+" if version is None else logs_topic(service, version)


def parse_logs_topic(topic: str) -> tuple[str, int] | None:
    """(service, version) of a ``mesh/logs/{svc}/v{N}`` topic; None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[:2] != ["mesh", "logs"] or not parts[2]:
        return None
    match = _VERSION_SEGMENT.match(parts[3])
    return None if match is None else (parts[2], int(match.group(1)))


_WAKE_PREFIX = "mesh/wake/"


def wake_topic(service: str) -> str:
    """``mesh/wake/{svc}``: a caller whose call reached nobody asks the controller to scale ``service``
    up from zero replicas (empty payload; callers publish, only the controller subscribes)."""
    return _WAKE_PREFIX + service


def wake_filter() -> str:
    """The filter for every service's wake requests (the controller's)."""
    return _WAKE_PREFIX + "+"


def parse_wake_topic(topic: str) -> str | None:
    """The service of a ``mesh/wake/{svc}`` topic; None for any other topic."""
    if not topic.startswith(_WAKE_PREFIX):
        return None
    service = topic[len(_WAKE_PREFIX) :]
    return service if service and "/" not in service else None


_CONFIG_PREFIX = "mesh/config/"


def config_topic(service: str | None = None) -> str:
    """``mesh/config/{svc}`` (retained, by the controller): the service's live configuration,
    ``{"revision": N, "values": {...}}``, read by its runtimes and handed to handlers as ``ctx.config``;
    empty once the service is gone. Without a service, ``mesh/config``: the controller's retained marker
    (configurations are published on this broker), which a runtime subscribes to after its own topic."""
    return "mesh/config" if service is None else _CONFIG_PREFIX + service


def config_filter() -> str:
    """The filter for every service's live configuration (the controller's, to learn what is retained)."""
    return _CONFIG_PREFIX + "+"


def parse_config_topic(topic: str) -> str | None:
    """The service of a ``mesh/config/{svc}`` topic; None for any other topic."""
    if not topic.startswith(_CONFIG_PREFIX):
        return None
    service = topic[len(_CONFIG_PREFIX) :]
    return service if service and "/" not in service else None


def serving_filters(service: str, version: int, *, live: bool) -> list[str]:
    """Shared-subscription filters a runtime of ``service`` version ``version`` subscribes to."""
    filters = [f"$share/{service}-v{version}/service/{service}/v{version}/+"]
    if live:
        filters += [f"$share/{service}/service/{service}/+", f"$share/{service}/service/{service}"]
    return filters


@dataclass(frozen=True, slots=True)
class Target:
    """What a request topic addresses; ``function`` is None on the envelope topic."""

    service: str
    function: str | None
    version: int | None = None


def parse_topic(topic: str) -> Target | None:
    """Read ``service/{svc}``, ``service/{svc}/{fn}`` or ``service/{svc}/v{N}/{fn}``; None otherwise."""
    parts = topic.split("/")
    if len(parts) < 2 or parts[0] != "service" or not parts[1]:
        return None
    if len(parts) == 2:
        return Target(parts[1], None)
    if len(parts) == 3:
        return Target(parts[1], parts[2])
    if len(parts) == 4:
        match = _VERSION_SEGMENT.match(parts[2])
        if match:
            return Target(parts[1], parts[3], int(match.group(1)))
    return None


def service_state_topic(service: str | None = None) -> str:
    """``mesh/services/{svc}`` (retained, by the controller): the service's versions, functions and
    serving state, or empty once it is gone. Without a service, ``mesh/services``: retained by that
    publisher, so that a missing service state means there is no such service."""
    return "mesh/services" if service is None else f"mesh/services/{service}"


def service_state_filter() -> str:
    """The filter for every service's state (not the ``mesh/services`` marker)."""
    return service_state_topic("+")


def parse_service_state_topic(topic: str) -> str | None:
    """The service of a ``mesh/services/{svc}`` topic; None for the marker and any other topic."""
    prefix = service_state_topic("")
    if not topic.startswith(prefix):
        return None
    service = topic[len(prefix) :]
    return service if service and "/" not in service else None


# --------------------------------------------------------------------------- events and binary transfers
#
# ``dormant.messaging`` publishes events on ``events/{name}`` and chunked binary transfers on
# ``binary/{name}``, QoS 1, with the sender's identity as user properties (the subject, never the
# token: every subscriber reads them). A name is one or more ``/``-separated segments of letters,
# digits, ``_`` and ``-`` (no dots, so a name is never mistaken for a ``service.function`` target).

EVENTS_PREFIX = "events/"
BINARY_PREFIX = "binary/"
MAX_EVENT_NAME_CHARS = 200
_EVENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:/[A-Za-z0-9][A-Za-z0-9_-]*)*")

PROP_USER_ID = "user-id"
"""The sender's subject (``UserContext.user_id``); absent when the sender served an anonymous call."""
PROP_EVENT_ID = "event-id"
"""Derived from the sending call's callId, so a re-run sender repeats it and receivers can de-duplicate."""
PROP_CAUSATION_ID = "causation-id"
"""The callId of the call that sent the event or transfer."""
PROP_TRANSFER_ID = "transfer-id"
PROP_CHUNK_INDEX = "chunk-index"
PROP_CHUNK_TOTAL = "chunk-total"
PROP_CHUNK_SHA256 = "chunk-sha256"
PROP_TRANSFER_SHA256 = "transfer-sha256"
PROP_TRANSFER_SIZE = "transfer-size"
MESSAGING_PROPERTIES = frozenset(
    {
        PROP_USER_ID,
        PROP_EVENT_ID,
        PROP_CAUSATION_ID,
        PROP_TRANSFER_ID,
        PROP_CHUNK_INDEX,
        PROP_CHUNK_TOTAL,
        PROP_CHUNK_SHA256,
        PROP_TRANSFER_SHA256,
        PROP_TRANSFER_SIZE,
    }
)
"""User properties the messaging layer sets itself; a sender's own headers may not use these names."""


def is_valid_event_name(name: str) -> bool:
    return len(name) <= MAX_EVENT_NAME_CHARS and _EVENT_NAME.fullmatch(name) is not None


def _checked_name(name: str, kind: str) -> str:
    if not is_valid_event_name(name):
        raise ValidationError(
            f"{name[:100]!r} is not {kind} name: /-separated segments of letters, digits, _ and -, "
            f"at most {MAX_EVENT_NAME_CHARS} characters",
            {"name": name[:100]},
        )
    return name


def event_topic(name: str) -> str:
    """``events/{name}``: where events of that name are published; ``ValidationError`` for a bad name."""
    return EVENTS_PREFIX + _checked_name(name, "an event")


def parse_event_topic(topic: str) -> str | None:
    """The name of an ``events/{name}`` topic; None for any other topic."""
    name = topic[len(EVENTS_PREFIX) :] if topic.startswith(EVENTS_PREFIX) else ""
    return name if is_valid_event_name(name) else None


def binary_topic(name: str) -> str:
    """``binary/{name}``: where the chunks of transfers of that name are published."""
    return BINARY_PREFIX + _checked_name(name, "a binary transfer")


def parse_binary_topic(topic: str) -> str | None:
    """The name of a ``binary/{name}`` topic; None for any other topic."""
    name = topic[len(BINARY_PREFIX) :] if topic.startswith(BINARY_PREFIX) else ""
    return name if is_valid_event_name(name) else None


# --------------------------------------------------------------------------- requests


@dataclass(slots=True)
class Call:
    """One decoded request, in either form."""

    service: str
    function: str
    version: int | None
    call_id: str
    params: Any
    reply_to: str | None = None
    correlation: bytes | None = None
    deadline: float | None = None
    """Absolute deadline in seconds since the epoch."""
    headers: dict[str, str] = field(default_factory=dict)
    envelope: bool = False
    message_id: str | None = None
    call_id_given: bool = False
    """True when the caller chose the callId (Correlation Data or an envelope ``callId``), so it can retry
    with it; a callId the runtime made up is never de-duplicated."""


class CallRejected(Exception):
    """A request that cannot be dispatched; ``call`` holds what is known so the error can be answered."""

    def __init__(self, error: DormantError, call: Call) -> None:
        super().__init__(str(error))
        self.error = error
        self.call = call


def reply_topic_problem(topic: str) -> str | None:
    """Why ``topic`` may not receive an answer, or None when it may.

    Answers go only to plain topic names under ``reply/``: not into a service's request topics (or any
    other part of the mesh), never to a wildcard (a broker disconnects a client that publishes to one),
    no empty level, at most ``MAX_REPLY_TOPIC_BYTES`` bytes of valid MQTT UTF-8 (no NUL, control
    characters, surrogates or non-characters, each of which also makes a broker disconnect).
    """
    if not topic.startswith(REPLY_PREFIX):
        return f"a reply topic must start with {REPLY_PREFIX!r}"
    if len(topic) > MAX_REPLY_TOPIC_BYTES:
        return f"a reply topic is at most {MAX_REPLY_TOPIC_BYTES} bytes"
    if "+" in topic or "#" in topic:
        return "a reply topic may not hold a wildcard (+ or #)"
    if "" in topic.split("/"):
        return "a reply topic may not have an empty level"
    problem = mqtt_string_problem(topic)
    if problem is not None:
        return f"a reply topic must be valid MQTT UTF-8 ({problem})"
    if len(topic.encode()) > MAX_REPLY_TOPIC_BYTES:
        return f"a reply topic is at most {MAX_REPLY_TOPIC_BYTES} bytes"
    return None


def _valid_text(value: object) -> bool:
    """A string that is valid UTF-8 (no lone surrogates: bytes a broker passed on unchecked)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _parse_deadline(value: str) -> float:
    """A ``deadline`` user property: 1 to 15 ASCII digits of epoch milliseconds."""
    if not _DEADLINE.fullmatch(value):
        raise ValidationError(
            f"the deadline user property must be 1 to {MAX_DEADLINE_DIGITS} digits of epoch "
            f"milliseconds, got {value[:40]!r}" + ("..." if len(value) > 40 else ""),
            {"property": PROP_DEADLINE},
        )
    return int(value) / 1000.0


def _read_properties(
    user_properties: UserProperties, expiry_s: object, now: float
) -> tuple[dict[str, str], float | None, ValidationError | None]:
    """Headers, absolute deadline and the first property error, from the native request properties.

    Rules (docs/wire-protocol.md): names match exactly; a pair that is not valid UTF-8 is ignored; every
    ``deadline`` must be well formed and the earliest counts; the Message Expiry Interval, when a
    positive integer, bounds the deadline from arrival; ``traceparent`` that is not W3C version-00 shape
    is dropped, and with it ``tracestate`` (also dropped over 512 bytes); every other pair, the
    ``authorization`` one included, is passed to the handler as a header (the last of a repeated name
    wins).
    """
    headers: dict[str, str] = {}
    deadline: float | None = None
    problem: ValidationError | None = None
    pairs = user_properties if isinstance(user_properties, list | tuple) else ()
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            continue
        key, value = pair
        if not (_valid_text(key) and _valid_text(value)):
            continue
        if key == PROP_DEADLINE:
            try:
                parsed = _parse_deadline(value)
            except ValidationError as exc:
                problem = problem or exc
                continue
            deadline = parsed if deadline is None else min(deadline, parsed)
            continue
        headers[key] = value
    _check_trace_context(headers)
    if isinstance(expiry_s, int) and not isinstance(expiry_s, bool) and 0 < expiry_s <= MAX_EXPIRY_S:
        by_expiry = now + expiry_s
        deadline = by_expiry if deadline is None else min(deadline, by_expiry)
    return headers, deadline, problem


def trace_context(headers: Mapping[str, str]) -> dict[str, str]:
    """The W3C trace context of ``headers`` that the rules below keep: ``{}``, or ``traceparent`` and
    the ``tracestate`` beside it (``dormant._tracing`` reads callers' context through this)."""
    kept = {key: headers[key] for key in (PROP_TRACEPARENT, PROP_TRACESTATE) if key in headers}
    _check_trace_context(kept)
    return kept


def _check_trace_context(headers: dict[str, str]) -> None:
    """Drop a ``traceparent`` that is not W3C trace context (version 00 form) and a ``tracestate``
    without a valid one or over 512 bytes: the W3C rule is to ignore bad trace context, not fail."""
    parent = headers.get(PROP_TRACEPARENT)
    if parent is not None:
        match = _TRACEPARENT.fullmatch(parent)
        if (
            match is None
            or match.group(1) == "ff"
            or match.group(2) == "0" * 32
            or match.group(3) == "0" * 16
        ):
            del headers[PROP_TRACEPARENT]
    state = headers.get(PROP_TRACESTATE)
    if state is not None and (PROP_TRACEPARENT not in headers or len(state.encode()) > MAX_TRACESTATE_BYTES):
        del headers[PROP_TRACESTATE]


def decode_call(
    topic: str,
    payload: bytes,
    *,
    response_topic: str | None = None,
    correlation: bytes | None = None,
    user_properties: UserProperties = (),
    expiry_s: int | None = None,
    now: float | None = None,
) -> Call:
    """Decode a request; raise ``CallRejected`` (with what is known) for anything malformed.

    Total over its inputs: nothing a client sends makes it raise anything but ``CallRejected``. When
    the reply destination is not allowed (``reply_topic_problem``), the rejected call has no
    ``reply_to``: nothing is published, and the request is acknowledged with nobody to answer.
    """
    call = Call(service="", function="", version=None, call_id=CallId.new().data.hex(), params=None)
    try:
        _decode(call, topic, payload, response_topic, correlation, user_properties, expiry_s, now)
    except CallRejected:
        raise
    except DormantError as exc:
        raise CallRejected(exc, call) from None
    except Exception as exc:  # a parsing rule missed a case: still a typed refusal, never a crash
        log.exception("[%s] decoding a request on %r failed", call.call_id, topic)
        call.reply_to = (
            call.reply_to if call.reply_to and reply_topic_problem(call.reply_to) is None else None
        )
        raise CallRejected(ValidationError(f"malformed request: {type(exc).__name__}"), call) from None
    return call


def _decode(
    call: Call,
    topic: object,
    payload: object,
    response_topic: object,
    correlation: object,
    user_properties: UserProperties,
    expiry_s: object,
    now: float | None,
) -> None:
    now = time.time() if now is None else now
    target = parse_topic(topic) if _valid_text(topic) else None  # type: ignore[arg-type]
    if target is not None:
        call.service, call.function, call.version = target.service, target.function or "", target.version
        call.envelope = target.function is None
    correlation = bytes(correlation) if isinstance(correlation, bytes | bytearray | memoryview) else None
    if correlation:  # empty Correlation Data is no callId: the runtime makes one up and echoes b""
        call.call_id = CallId(correlation).text
        call.call_id_given = True
    call.correlation = correlation
    headers, call.deadline, property_error = _read_properties(user_properties, expiry_s, now)
    call.headers = headers
    reply_problem = None
    if isinstance(response_topic, str):
        reply_problem = _set_reply_to(call, response_topic)
    if target is None:
        raise CallRejected(NotFound(f"not a service topic: {str(topic)[:200]!r}"), call)
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise ValidationError("the payload must be bytes")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValidationError(
            f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD_BYTES} byte limit",
            {"limit": MAX_PAYLOAD_BYTES, "size": len(payload)},
        )
    try:
        data = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError as exc:
        if call.envelope:
            _refuse_reply(call, reply_problem)
        raise ValidationError(f"payload is not valid JSON: {exc}") from None
    if call.envelope:
        reply_problem = _read_envelope(data, call, reply_problem)
    else:
        call.params = data
    _refuse_reply(call, reply_problem)
    if correlation is not None and len(correlation) > MAX_CALL_ID_BYTES:
        raise _call_id_too_long(len(correlation))
    if property_error is not None:
        raise property_error
    if not isinstance(call.params, dict):
        raise ValidationError(
            f"the input must be a JSON object, got {_json_kind(call.params)}",
            {"errors": [{"path": "", "message": "must be an object"}]},
        )


def _set_reply_to(call: Call, topic: str) -> str | None:
    """Take ``topic`` as the reply destination when it is allowed; else clear it and say why (the why
    names the topic, cut short: it goes only to the runtime's log)."""
    problem = reply_topic_problem(topic) if _valid_text(topic) else "a reply topic must be valid UTF-8"
    call.reply_to = None if problem else topic
    if problem is None:
        return None
    shown = topic if len(topic) <= 80 else topic[:80] + "..."
    return f"{shown!r}: {problem}"


def _refuse_reply(call: Call, problem: str | None) -> None:
    """A disallowed reply destination: refuse the call (``reply_to`` is already None, so nobody is
    answered) before anything else is looked at."""
    if problem is not None:
        raise CallRejected(ValidationError(f"refused reply topic: {problem}"), call)


def _call_id_too_long(size: int) -> ValidationError:
    return ValidationError(
        f"a callId is at most {MAX_CALL_ID_BYTES} bytes, got {size}",
        {"limit": MAX_CALL_ID_BYTES, "size": size},
    )


def _envelope_string(data: dict[str, Any], key: str) -> str | None:
    """An optional string field of an envelope: absent or null is None; any other type is refused."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f'the envelope field "{key}" must be a string, got {_json_kind(value)}')
    return value


def _read_envelope(data: Any, call: Call, reply_problem: str | None) -> str | None:
    """Fill ``call`` from an envelope body; on the envelope topic everything is in the payload.

    Returns the reply-topic problem to act on: the envelope's ``replyTo``, when present, replaces the
    MQTT Response Topic (so an invalid Response Topic no longer matters, and an invalid ``replyTo``
    means nobody is answered).
    """
    call.envelope = True
    if not isinstance(data, dict):
        _refuse_reply(call, reply_problem)
        raise ValidationError("an envelope call must be a JSON object")
    reply = data.get("replyTo")
    if isinstance(reply, str) and reply:
        reply_problem = _set_reply_to(call, reply)
    elif reply is not None and reply != "":
        call.reply_to = None
        reply_problem = f"replyTo must be a string, got {_json_kind(reply)}"
    _refuse_reply(call, reply_problem)
    message_id = _envelope_string(data, "messageId")
    if message_id is not None:
        if len(message_id.encode()) > MAX_CALL_ID_BYTES:
            raise ValidationError(f"a messageId is at most {MAX_CALL_ID_BYTES} bytes")
        call.message_id = message_id
    call_id = _envelope_string(data, "callId")
    if call_id:
        if len(call_id.encode()) > MAX_CALL_ID_BYTES:
            raise _call_id_too_long(len(call_id.encode()))
        call.call_id = call_id
        call.call_id_given = True
    headers = data.get("headers")
    if isinstance(headers, dict):
        call.headers.update({k.lower(): v for k, v in headers.items() if _valid_text(k) and _valid_text(v)})
        _check_trace_context(call.headers)
    elif headers is not None:
        raise ValidationError(f'the envelope field "headers" must be an object, got {_json_kind(headers)}')
    body = data.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("function"), str):
        raise ValidationError('an envelope call needs "body": {"function", "parameters"}')
    call.function = body["function"]
    call.params = body.get("parameters", {})
    return None


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def encode_request(params: Any) -> bytes:
    """The payload of a native request."""
    return orjson.dumps(params)


def request_properties(
    *, deadline: float | None = None, authorization: str | None = None, extra: Iterable[tuple[str, str]] = ()
) -> list[tuple[str, str]]:
    """User properties of a native request."""
    props: list[tuple[str, str]] = []
    if deadline is not None:
        props.append((PROP_DEADLINE, str(int(deadline * 1000))))
    if authorization:
        props.append((PROP_AUTHORIZATION, authorization))
    props.extend(extra)
    return props


def encode_envelope_request(
    function: str, params: Any, *, call_id: str, reply_to: str, headers: dict[str, str] | None = None
) -> bytes:
    """An envelope request, for callers that cannot use MQTT 5 properties."""
    return orjson.dumps(
        {
            "messageId": uuid.uuid4().hex,
            "callId": call_id,
            "replyTo": reply_to,
            "headers": {"content-type": CONTENT_TYPE_JSON, **(headers or {})},
            "body": {"function": function, "parameters": params},
        }
    )


# --------------------------------------------------------------------------- responses

MAX_EXPIRY_S = 2**32 - 1
"""The largest Message Expiry Interval MQTT can carry."""


def reply_expiry(deadline: float | None, now: float | None = None) -> int | None:
    """Message Expiry of an answer: what is left of the caller's deadline (at least 1 s), or None."""
    if deadline is None:
        return None
    now = time.time() if now is None else now
    return max(1, min(MAX_EXPIRY_S, int(deadline - now) + 1))


OK_PROPERTIES: tuple[tuple[str, str], ...] = ((PROP_STATUS, STATUS_OK),)
ERROR_PROPERTIES: tuple[tuple[str, str], ...] = ((PROP_STATUS, STATUS_ERROR),)


def encode_response(call: Call, ok: bool, body: Any) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """Payload and user properties of the answer to ``call`` (a result, or an error payload)."""
    return encode_response_json(call, ok, orjson.dumps(body))


def encode_response_json(call: Call, ok: bool, body_json: bytes) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    """The same, from the body already serialized (a stored answer is replayed byte for byte)."""
    props = OK_PROPERTIES if ok else ERROR_PROPERTIES
    if not call.envelope:
        return body_json, props
    envelope = {
        "messageId": uuid.uuid4().hex,
        "callId": call.call_id,
        "inReplyTo": call.message_id,
        "headers": {"content-type": CONTENT_TYPE_JSON, PROP_STATUS: props[0][1]},
        "body": orjson.Fragment(body_json),
    }
    return orjson.dumps(envelope), props


def encode_error(call: Call, error: DormantError) -> tuple[bytes, tuple[tuple[str, str], ...]]:
    return encode_response(call, False, error.to_payload())


def decode_response(payload: bytes, user_properties: UserProperties) -> Any:
    """The result carried by a native response; raises the typed error for an error response."""
    status = STATUS_OK
    for key, value in user_properties:
        if key == PROP_STATUS:
            status = value
    try:
        body = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError:
        raise errors.SystemError("the service answered with malformed JSON") from None
    if status == STATUS_ERROR:
        raise error_from_payload(body)
    return body
