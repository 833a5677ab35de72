"""The spans of a Dormant call, on the OpenTelemetry API: imported by ``dormant._tracing`` only once a
tracer provider is set up in the process (so a process that does not trace never imports OpenTelemetry).

One call, across processes (``function.*`` span names, attribute names in ``docs/observability.md``):

```
caller  function.invoke    CLIENT (PRODUCER for a one-way send): the gateway's, or the SDK client's
        ├─ function.route     the version pick from the service's route table
        └─ function.coldstart the call waited for a version to start (scaled to zero, or a switch)
runtime function.execute   SERVER (CONSUMER for a call nobody waits for): its parent is the invoke
        │                  span, read from the request's ``traceparent``/``tracestate``
        └─ function.response PRODUCER: the publication of the answer
```

Trace context goes out in W3C form (``traceparent`` version 00 and the ``tracestate`` it carries), as
MQTT 5 user properties or envelope headers; coming in, only what ``dormant.wire`` keeps (a valid
``traceparent``, a ``tracestate`` beside it) is read: malformed context is ignored, and the span starts
a new trace. A trace that is not sampled still has its ``function.invoke`` and ``function.execute``
spans (they carry the decision on, with the ``sampled`` flag off), but no child spans: nothing would
record them. Attributes are set only on spans that record.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from . import wire
from .errors import DormantError

INVOKE = "function.invoke"
ROUTE = "function.route"
COLDSTART = "function.coldstart"
EXECUTE = "function.execute"
RESPONSE = "function.response"

# OpenTelemetry semantic conventions (messaging, FaaS, errors) and Dormant's own attributes.
MESSAGING_SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
OPERATION_TYPE = "messaging.operation.type"
OPERATION_NAME = "messaging.operation.name"
BODY_SIZE = "messaging.message.body.size"
FAAS_TRIGGER = "faas.trigger"
FAAS_INVOCATION_ID = "faas.invocation_id"
FAAS_COLDSTART = "faas.coldstart"
ERROR_TYPE = "error.type"
SERVICE = "dormant.service"
FUNCTION = "dormant.function"
VERSION = "dormant.version"
ALIAS = "dormant.alias"
ATTEMPTS = "dormant.attempts"
COLDSTART_REASON = "dormant.coldstart.reason"
STATUS = "dormant.status"
REPLAYED = "dormant.replayed"
ENVELOPE = "dormant.envelope"

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_KEYS = (wire.PROP_TRACEPARENT, wire.PROP_TRACESTATE)
_ROOT = Context()

OPEN_INVOCATION: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar(
    "dormant_open_invocation", default=None
)
"""The gateway's invocation being made (``dormant._tracing.invocation``), for its ``Client.call``."""
EXECUTION: contextvars.ContextVar[Execution | None] = contextvars.ContextVar(
    "dormant_execution", default=None
)
"""The request this runtime task is handling."""


def extract(headers: Mapping[str, str] | None) -> Context | None:
    """The caller's trace from ``headers``, when they hold valid W3C trace context; None otherwise."""
    if not headers or wire.PROP_TRACEPARENT not in headers:
        return None
    kept = wire.trace_context(headers)
    return _PROPAGATOR.extract(kept) if kept else None


def inject(span: Span) -> list[tuple[str, str]]:
    """``traceparent`` (and ``tracestate``, when there is one) naming ``span`` as the parent: W3C
    version 00, the sampled flag as decided."""
    context = span.get_span_context()
    if not context.is_valid:
        return []
    found = [
        (
            wire.PROP_TRACEPARENT,
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags) & 0xFF:02x}",
        )
    ]
    state = context.trace_state.to_header() if context.trace_state else ""
    if state:
        found.append((wire.PROP_TRACESTATE, state))
    return found


def parent_sampled() -> bool:
    """Whether a span started now would be the child of a sampled span (a version pick is traced only
    as part of a call: inside its ``function.invoke``)."""
    current = trace.get_current_span().get_span_context()
    return current.is_valid and current.trace_flags.sampled


def _error_type(exc: BaseException) -> str:
    return exc.type if isinstance(exc, DormantError) else type(exc).__qualname__


def _fail(span: Span, error_type: str, message: str | None = None) -> None:
    if span.is_recording():
        span.set_attribute(ERROR_TYPE, error_type)
        span.set_status(StatusCode.ERROR, message)


class Invocation:
    """A ``function.invoke`` span: a caller's call of ``service.function``, from before its version is
    picked to its answer. Entered (``with``), it is the current span, so the route pick's span (and the
    cold start's) are its children. Made by the gateway around its whole invoke path (``opened``: the
    ``Client.call`` of the same target made inside it uses it, see ``Borrowed``), or by ``Client.call``.
    """

    def __init__(
        self,
        tracer: Tracer,
        service: str,
        function: str,
        *,
        headers: Mapping[str, str] | None = None,
        trigger: str | None = None,
        call_id: str | None = None,
        one_way: bool = False,
        opened: bool = False,
    ) -> None:
        self.service = service
        self.function = function
        self.claimed = False
        """A ``Client.call`` borrowed it (the gateway's invocation is one call's)."""
        self._tracer = tracer
        self._opened = opened
        self.span = span = tracer.start_span(
            INVOKE,
            context=extract(headers),  # the caller's own trace when given; else the current span's
            kind=SpanKind.PRODUCER if one_way else SpanKind.CLIENT,
        )
        self.recording = span.is_recording()
        if self.recording:
            attributes: dict[str, Any] = {
                MESSAGING_SYSTEM: "mqtt",
                OPERATION_TYPE: "send",
                OPERATION_NAME: "publish",
                SERVICE: service,
                FUNCTION: function,
            }
            if trigger is not None:
                attributes[FAAS_TRIGGER] = trigger
            if call_id is not None:
                attributes[FAAS_INVOCATION_ID] = call_id
            span.set_attributes(attributes)
        self._tokens: tuple[object, contextvars.Token[Invocation | None] | None] | None = None
        self._coldstart: Span | None = None

    def __enter__(self) -> Invocation:
        attached = otel_context.attach(trace.set_span_in_context(self.span))
        self._tokens = (attached, OPEN_INVOCATION.set(self) if self._opened else None)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tokens is not None:
            attached, opened = self._tokens
            if opened is not None:
                OPEN_INVOCATION.reset(opened)
            otel_context.detach(attached)  # type: ignore[arg-type]
            self._tokens = None
        self.delivered()
        if exc is not None and not isinstance(exc, GeneratorExit):
            self.failed(exc)
        self.span.end()

    def failed(self, exc: BaseException) -> None:
        """The call ended with ``exc``: ``error.type`` (the typed error's type) and an error status."""
        _fail(self.span, _error_type(exc), str(exc)[:200] if isinstance(exc, DormantError) else None)

    # ------------------------------------------------------------------ what Client.call tells it

    def sending(self, topic: str, version: int | None, call_id: str) -> None:
        """The request's topic, version and callId, once known (before the first publish)."""
        if self.recording:
            attributes: dict[str, Any] = {DESTINATION: topic, FAAS_INVOCATION_ID: call_id}
            if version is not None:
                attributes[VERSION] = version
            self.span.set_attributes(attributes)

    def headers(self, headers: Mapping[str, str] | None) -> list[tuple[str, str]]:
        """The request's user properties from the caller's headers: any trace context in them replaced
        by this span's (the callee's spans are this span's children)."""
        sent = [(k, v) for k, v in headers.items() if k not in _TRACE_KEYS] if headers else []
        sent.extend(inject(self.span))
        return sent

    def waiting(self, reason: str) -> None:
        """The call is published again because no version serves it yet: the cold start begins."""
        if self._coldstart is None and self.recording:
            self.span.set_attribute(FAAS_COLDSTART, True)
            self._coldstart = self._tracer.start_span(
                COLDSTART,
                context=trace.set_span_in_context(self.span),
                attributes={SERVICE: self.service, FUNCTION: self.function, COLDSTART_REASON: reason},
            )

    def delivered(self) -> None:
        """A runtime took the call: the cold start (if any) is over."""
        if self._coldstart is not None:
            self._coldstart.end()
            self._coldstart = None

    def attempts(self, count: int) -> None:
        if self.recording:
            self.span.set_attribute(ATTEMPTS, count)


class Borrowed:
    """An open gateway ``Invocation`` as ``Client.call`` uses it: neither made current again nor ended
    by the call (the gateway's ``with`` does both, and records the outcome)."""

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation

    def __enter__(self) -> Invocation:
        return self.invocation

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.invocation.delivered()


class Route:
    """A ``function.route`` span around one version pick (``Client.route``)."""

    def __init__(self, tracer: Tracer, service: str, alias: str, sticky: bool) -> None:
        self.span = tracer.start_span(
            ROUTE, attributes={SERVICE: service, ALIAS: alias, "dormant.route.sticky": sticky}
        )

    def __enter__(self) -> Route:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            _fail(self.span, _error_type(exc))
        self.span.end()

    def picked(self, version: int | None) -> None:
        """The pick: a version, or None (no route table: the call goes to the live topic)."""
        if version is not None:
            self.span.set_attribute(VERSION, version)
        else:
            self.span.set_attribute("dormant.route.table", False)


class Execution:
    """A ``function.execute`` span: one request's handling in a runtime, from the decoded request to
    its answer published; current while it runs, so the handler's logs carry its ids and the calls
    the handler makes (``ctx.messaging``) are its children."""

    def __init__(
        self, tracer: Tracer, call: wire.Call, topic: str, version: int | None, coldstart: bool
    ) -> None:
        self._tracer = tracer
        # The caller's context, or a new trace (never a span that happens to be current here).
        self.span = span = tracer.start_span(
            EXECUTE,
            context=extract(call.headers) or _ROOT,
            kind=SpanKind.SERVER if call.reply_to else SpanKind.CONSUMER,
        )
        self.recording = span.is_recording()
        if self.recording:
            attributes: dict[str, Any] = {
                MESSAGING_SYSTEM: "mqtt",
                DESTINATION: topic,
                OPERATION_TYPE: "process",
                OPERATION_NAME: "process",
                FAAS_TRIGGER: "pubsub",
                FAAS_INVOCATION_ID: call.call_id,
                FAAS_COLDSTART: coldstart,
            }
            if call.service:
                attributes[SERVICE] = call.service
            if call.function:
                attributes[FUNCTION] = call.function
            if version is not None:
                attributes[VERSION] = version
            if call.envelope:
                attributes[ENVELOPE] = True
            span.set_attributes(attributes)
        self._tokens: tuple[object, contextvars.Token[Execution | None]] | None = None

    def __enter__(self) -> Execution:
        self._tokens = (otel_context.attach(trace.set_span_in_context(self.span)), EXECUTION.set(self))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tokens is not None:
            attached, execution = self._tokens
            EXECUTION.reset(execution)
            otel_context.detach(attached)  # type: ignore[arg-type]
            self._tokens = None
        if exc is not None and not isinstance(exc, GeneratorExit):
            _fail(self.span, _error_type(exc))
        self.span.end()


class Response:
    """A ``function.response`` span (PRODUCER) around publishing the answer of ``execution``."""

    def __init__(self, execution: Execution, call: wire.Call, ok: bool, size: int) -> None:
        self.span = execution._tracer.start_span(
            RESPONSE,
            context=trace.set_span_in_context(execution.span),
            kind=SpanKind.PRODUCER,
            attributes={
                MESSAGING_SYSTEM: "mqtt",
                DESTINATION: call.reply_to or "",
                OPERATION_TYPE: "send",
                OPERATION_NAME: "publish",
                FAAS_INVOCATION_ID: call.call_id,
                BODY_SIZE: size,
            },
        )

    def __enter__(self) -> Response:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            _fail(self.span, _error_type(exc))
        self.span.end()


def response(call: wire.Call, ok: bool, size: int) -> Response | None:
    """The ``function.response`` span of the request being handled; None outside a recorded one."""
    execution = EXECUTION.get()
    if execution is None or not execution.recording:
        return None
    return Response(execution, call, ok, size)


def answered(ok: bool, body_json: bytes) -> None:
    """The request's answer: ``dormant.status``, and for an error its type and the error status."""
    execution = EXECUTION.get()
    if execution is None or not execution.recording:
        return
    span = execution.span
    span.set_attribute(STATUS, wire.STATUS_OK if ok else wire.STATUS_ERROR)
    if not ok:
        try:
            body = orjson.loads(body_json)
        except orjson.JSONDecodeError:
            body = None
        error_type = body.get("type") if isinstance(body, dict) else None
        _fail(span, str(error_type or "SystemError"))


def replayed() -> None:
    """The answer came from the de-duplication store: the handler did not run again."""
    execution = EXECUTION.get()
    if execution is not None and execution.recording:
        execution.span.set_attribute(REPLAYED, True)


def handler_failed(exc: BaseException) -> None:
    """The handler raised something unexpected (answered ``SystemError``): kept on the span."""
    execution = EXECUTION.get()
    if execution is not None and execution.recording:
        execution.span.record_exception(exc)
