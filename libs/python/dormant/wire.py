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
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from .errors import DormantError, NotFound, ValidationError, error_from_payload

MAX_PAYLOAD_BYTES = 6 * 1024 * 1024
CONTENT_TYPE_JSON = "application/json"

PROP_STATUS = "status"
PROP_DEADLINE = "deadline"
PROP_AUTHORIZATION = "authorization"
PROP_TRACEPARENT = "traceparent"
PROP_TRACESTATE = "tracestate"
STATUS_OK = "ok"
STATUS_ERROR = "error"

_VERSION_SEGMENT = re.compile(r"^v([0-9]+)$")

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


def reply_topic(client_id: str) -> str:
    """The response topic a client puts on its calls."""
    return f"reply/{client_id}"


def reply_filter(client_id: str) -> str:
    """What a client subscribes to for its responses (``reply/{id}`` and below)."""
    return f"reply/{client_id}/#"


def routes_topic(service: str) -> str:
    return f"mesh/routes/{service}"


def stats_topic(service: str, version: int, pod_id: str) -> str:
    return f"mesh/stats/{service}/v{version}/{pod_id}"


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


# --------------------------------------------------------------------------- call ids


def new_call_id() -> bytes:
    """A fresh callId: 16 random bytes, sent as Correlation Data."""
    return uuid.uuid4().bytes


def call_id_text(correlation: bytes) -> str:
    """The text form of a callId (printable correlation data as is, anything else as hex)."""
    if 0 < len(correlation) <= 200:
        try:
            text = correlation.decode("ascii")
        except UnicodeDecodeError:
            pass
        else:
            if text.isprintable():
                return text
    return correlation.hex()


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


def _deadline(user_properties: UserProperties, expiry_s: int | None, now: float) -> float | None:
    deadline: float | None = None
    for key, value in user_properties:
        if key == PROP_DEADLINE:
            try:
                deadline = int(value) / 1000.0
            except ValueError:
                deadline = None
    if expiry_s is not None and expiry_s > 0:
        by_expiry = now + expiry_s
        deadline = by_expiry if deadline is None else min(deadline, by_expiry)
    return deadline


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
    """Decode a request; raise ``CallRejected`` (with what is known) for anything malformed."""
    now = time.time() if now is None else now
    target = parse_topic(topic)
    headers = {k: v for k, v in user_properties if k != PROP_DEADLINE}
    call = Call(
        service=target.service if target else "",
        function=(target.function or "") if target else "",
        version=target.version if target else None,
        call_id=call_id_text(correlation) if correlation else uuid.uuid4().hex,
        params=None,
        reply_to=response_topic,
        correlation=correlation,
        deadline=_deadline(user_properties, expiry_s, now),
        headers=headers,
        call_id_given=correlation is not None,
        envelope=target is not None and target.function is None,
    )
    if target is None:
        raise CallRejected(NotFound(f"not a service topic: {topic!r}"), call)
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CallRejected(
            ValidationError(
                f"payload of {len(payload)} bytes is over the {MAX_PAYLOAD_BYTES} byte limit",
                {"limit": MAX_PAYLOAD_BYTES, "size": len(payload)},
            ),
            call,
        )
    try:
        data = orjson.loads(payload) if payload else None
    except orjson.JSONDecodeError as exc:
        raise CallRejected(ValidationError(f"payload is not valid JSON: {exc}"), call) from None
    if target.function is None:
        _read_envelope(data, call)
    else:
        call.params = data
    if not isinstance(call.params, dict):
        raise CallRejected(
            ValidationError(
                f"the input must be a JSON object, got {_json_kind(call.params)}",
                {"errors": [{"path": "", "message": "must be an object"}]},
            ),
            call,
        )
    return call


def _read_envelope(data: Any, call: Call) -> None:
    """Fill ``call`` from an envelope body; on the envelope topic everything is in the payload."""
    call.envelope = True
    if not isinstance(data, dict):
        raise CallRejected(ValidationError("an envelope call must be a JSON object"), call)
    if isinstance(data.get("messageId"), str):
        call.message_id = data["messageId"]
    if isinstance(data.get("callId"), str) and data["callId"]:
        call.call_id = data["callId"]
        call.call_id_given = True
    if isinstance(data.get("replyTo"), str) and data["replyTo"]:
        call.reply_to = data["replyTo"]
    headers = data.get("headers")
    if isinstance(headers, dict):
        call.headers.update({str(k).lower(): str(v) for k, v in headers.items() if isinstance(v, str)})
    body = data.get("body")
    if not isinstance(body, dict) or not isinstance(body.get("function"), str):
        raise CallRejected(ValidationError('an envelope call needs "body": {"function", "parameters"}'), call)
    call.function = body["function"]
    call.params = body.get("parameters", {})


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
        from .errors import SystemError as _SystemError

        raise _SystemError("the service answered with malformed JSON") from None
    if status == STATUS_ERROR:
        raise error_from_payload(body)
    return body
