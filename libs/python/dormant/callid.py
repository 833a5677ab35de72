"""callIds: one type, one text ↔ bytes rule, and the builders of derived ids.

A callId travels as bytes (MQTT 5 Correlation Data) and is stored, logged and shown as text (the
``call_results`` key, the envelope's ``callId``, ``requestId`` in logs, the gateway's ``callId``).
The rule, in one place:

* text → bytes: the UTF-8 encoding (``CallId.from_text``), so a caller's chosen callId (an idempotency
  key, a retry) reaches the runtime as the same text;
* bytes → text: printable ASCII (at most 200 bytes) as is, anything else as lowercase hex
  (``CallId.text``), so random correlation data (``CallId.new``) has a stable, loggable name. Data
  over ``MAX_CALL_ID_BYTES`` is refused by the wire decoder; its text is a short digest.

Derived ids are deterministic, so a retry derives the same id and de-duplication holds: ``child``
and ``child_call_id`` (a handler's call made on behalf of a parent call), ``idempotent`` (the
gateway's Idempotency-Key or CloudEvent id), ``attempt`` (one attempt of an async invocation),
``scheduled`` (one cron tick), ``queued`` (one queue message); ``fresh`` is a random text callId with
an optional prefix.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass

MAX_CALL_ID_BYTES = 256
"""Correlation Data, or an envelope ``callId`` as UTF-8, longer than this is refused."""
_MAX_PRINTABLE = 200


@dataclass(frozen=True, slots=True)
class CallId:
    """A callId; ``data`` is what goes in Correlation Data."""

    data: bytes

    @classmethod
    def new(cls) -> CallId:
        """A fresh random callId: 16 random bytes."""
        return cls(uuid.uuid4().bytes)

    @classmethod
    def from_text(cls, text: str) -> CallId:
        return cls(text.encode())

    @classmethod
    def of(cls, value: CallId | bytes | str | None) -> CallId:
        """``value`` as a callId: text by the text rule, bytes as they are, None as a fresh one."""
        if value is None:
            return cls.new()
        if isinstance(value, CallId):
            return value
        return cls.from_text(value) if isinstance(value, str) else cls(bytes(value))

    @property
    def text(self) -> str:
        return call_id_text(self.data)

    def __str__(self) -> str:
        return self.text

    def child(self, key: str) -> CallId:
        """The callId of a call made while serving this one, named by ``key`` (for example
        ``"svc.fn#1"``): the same parent and key always give the same child, so a retried parent
        never doubles a child's effect."""
        return CallId.from_text("c-" + _digest(self.text, key)[:32])


def call_id_text(data: bytes) -> str:
    """The text form of correlation data (see the module docstring)."""
    if len(data) > MAX_CALL_ID_BYTES:
        return "oversized-" + hashlib.sha256(data).hexdigest()[:32]
    if 0 < len(data) <= _MAX_PRINTABLE:
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            pass
        else:
            if text.isprintable():
                return text
    return data.hex()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def child_call_id(parent: str, target: str, n: int) -> str:
    """The callId of the ``n``-th (1, 2, ...) call to ``target`` made while serving the call ``parent``.

    A parent run again after a crash makes its calls in the same order, so it derives the same child
    callIds, and the callees' de-duplication answers the repeats from their stores instead of running
    them twice. The id is ``c-`` and 32 hex digits of a sha256 (printable, far under the callId limit).
    """
    if n < 1:
        raise ValueError(f"a child call's ordinal starts at 1, got {n}")
    return CallId.from_text(parent).child(f"{target}#{n}").text


def fresh(prefix: str = "") -> str:
    """A random text callId (32 hex digits), after ``prefix`` when one is given."""
    return prefix + CallId.new().data.hex()


def idempotent(principal: str, target: str, key: str) -> str:
    """The callId of a request with an Idempotency-Key (or a CloudEvent id): stable per caller and
    target, so the same key from another caller or to another function is another call."""
    return "idem-" + _digest(principal, target, key)[:40]


def attempt(parent: str, number: int) -> str:
    """The callId of attempt ``number`` (1, 2, ...) of an async invocation: a worker that takes over an
    attempt repeats it with the same id."""
    return f"{parent}.{number}"


def scheduled(trigger_id: str, tick_epoch_s: int) -> str:
    """The callId of one tick of a cron trigger: every gateway replica computes the same one."""
    return f"cron-{trigger_id}-{tick_epoch_s}"


def queued(trigger_id: str, message_id: str | None, body: bytes) -> str:
    """The callId of one queue message: its message id, or the digest of its body without one."""
    key = message_id or hashlib.sha256(body).hexdigest()[:32]
    return f"q-{trigger_id}-{key}"
