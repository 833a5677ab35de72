"""Turning an invoke request into a function input: plain JSON, the seed's envelope, or a CloudEvent.

- Plain JSON: the body is the function's input.
- The seed's form ``{"payload": <JSON or a JSON string>, "alias"?, "version"?, "invocationType"?}``:
  recognised when ``payload`` is present and no other keys are; the answer then takes the seed's
  response shape too.
- CloudEvents over HTTP: binary mode (``ce-*`` headers, the body is ``data``) or structured mode
  (``Content-Type: application/cloudevents+json``, the event is the body). The input is the event's
  data; ``id``, ``source``, ``type``, ``subject`` and ``time`` travel as call headers ``ce-*``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from dormant import callid
from dormant.errors import ValidationError

from .inputs import check_json_text, check_text, version_number

SEED_KEYS = frozenset({"payload", "alias", "version", "invocationType"})
CE_ATTRIBUTES = ("id", "source", "type", "subject", "time", "specversion")
_FUNCTION = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,254}", re.ASCII)  # fullmatch: "$" matches before "\n"
_SERVICE = re.compile(r"[a-z0-9-]{1,64}", re.ASCII)
_VERSION_TOPIC = re.compile(r"v[0-9]+", re.ASCII)


@dataclass(slots=True)
class InvokeInput:
    params: Any
    alias: str | None = None
    version: int | None = None
    seed_form: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    event_key: str | None = None
    """``source`` and ``id`` of a CloudEvent: the same event twice is the same call."""


def split_target(name: str) -> tuple[str, str]:
    """``service.function`` into its parts, or raise ``ValidationError``."""
    service, dot, function = name.partition(".")
    if (
        not dot
        or not _SERVICE.fullmatch(service)
        or not _FUNCTION.fullmatch(function)
        or _VERSION_TOPIC.fullmatch(function)
    ):
        raise ValidationError(
            f"invalid target {name!r}: use service.function (service: lowercase letters, digits and dashes;"
            " function: a letter, then letters, digits or underscores)"
        )
    return service, function


def _loads(raw: bytes | str) -> Any:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"the body is not valid JSON: {exc}") from None
    check_json_text(raw)
    return value


def _version(value: Any) -> int | None:
    return None if value is None else version_number(value)


def parse_version(value: Any) -> int | None:
    return _version(value)


def _ce_headers(attrs: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
    headers = {f"ce-{k}": str(attrs[k]) for k in CE_ATTRIBUTES if attrs.get(k) is not None}
    for name, text in headers.items():
        check_text(text, f"the CloudEvent attribute {name.removeprefix('ce-')!r}")
        if len(text) > 1024:
            raise ValidationError(
                f"the CloudEvent attribute {name.removeprefix('ce-')!r} is over 1024 characters"
            )
    for required in ("id", "source", "type", "specversion"):
        if f"ce-{required}" not in headers:
            raise ValidationError(f"the CloudEvent has no {required!r} attribute")
    key = f"{headers['ce-source']}\0{headers['ce-id']}"
    return headers, key


def parse_invoke_input(content_type: str, headers: Mapping[str, str], raw: bytes) -> InvokeInput:
    media = content_type.split(";", 1)[0].strip().lower()
    if media == "application/cloudevents+json":
        event = _loads(raw)
        if not isinstance(event, dict):
            raise ValidationError("a structured CloudEvent must be a JSON object")
        ce_headers, key = _ce_headers(event)
        if "data_base64" in event:
            try:
                data: Any = _loads(base64.b64decode(str(event["data_base64"]), validate=True))
            except ValueError:
                raise ValidationError("data_base64 is not base64-encoded JSON") from None
        else:
            data = event.get("data")
        return InvokeInput(params=data if data is not None else {}, headers=ce_headers, event_key=key)
    if "ce-specversion" in headers:
        attrs = {k.removeprefix("ce-"): v for k, v in headers.items() if k.startswith("ce-")}
        ce_headers, key = _ce_headers(attrs)
        params = _loads(raw) if raw.strip() else {}
        return InvokeInput(params=params, headers=ce_headers, event_key=key)
    value = _loads(raw) if raw.strip() else {}
    if isinstance(value, dict) and "payload" in value and set(value) <= SEED_KEYS:
        payload = value["payload"]
        if isinstance(payload, str):
            payload = _loads(payload) if payload.strip() else {}
        invocation_type = value.get("invocationType", "RequestResponse")
        if invocation_type not in ("RequestResponse", "Event"):
            raise ValidationError("invocationType must be RequestResponse or Event")
        alias = value.get("alias")
        if alias is not None and not isinstance(alias, str):
            raise ValidationError("alias must be a string")
        return InvokeInput(
            params=payload, alias=alias, version=_version(value.get("version")), seed_form=True
        )
    return InvokeInput(params=value)


def derive_call_id(principal: str, target: str, key: str) -> str:
    """The callId of a request with an Idempotency-Key (or a CloudEvent): stable per caller and target."""
    return callid.idempotent(principal, target, key)
