"""Trace context for Dormant's calls: whether this process traces, and W3C ``traceparent`` /
``tracestate`` in and out of calls (MQTT 5 user properties, or envelope headers).

Tracing is on in a process once an OpenTelemetry SDK tracer provider is set up there
(``dormant_telemetry.tracing`` does it for Dormant's processes from the ``OTEL_*`` variables; any SDK
caller may set up its own). The SDK uses the OpenTelemetry API alone, and only then: the spans live in
``dormant._spans``, imported on the first traced call. Off, the hot path pays one check (``tracer``:
OpenTelemetry not imported, or no provider set) and makes no span objects, and a caller's trace still
goes through, as W3C asks of a participant that does not trace: ``traceparent`` headers a caller gives
are sent as given, and a runtime hands the context a call arrived with on to the calls its handler
makes (``enter_handler``).

Who uses what:

* ``Client.call``: ``client_call`` (its ``function.invoke`` span, or the gateway's open one),
  ``outgoing`` (the request's trace properties); ``Client.route``: ``route`` (``function.route``);
* the gateway: ``invocation`` around each call it makes for an HTTP request, a cron tick or a message
  (``faas.trigger``), so its version pick and the call are one ``function.invoke``;
* the runtime: ``execute`` around one request's handling, ``response`` around publishing the answer,
  ``answered`` / ``replayed``; the dispatcher: ``enter_handler`` / ``leave_handler`` / ``handler_failed``.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import wire

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from ._spans import Invocation, Route

TRIGGERS = ("http", "pubsub", "timer", "datasource", "other")
"""``faas.trigger`` values (OpenTelemetry FaaS conventions): an HTTP request, a message (MQTT, a
queue), a schedule, a database or stream change, anything else."""

NO_TRACE: AbstractContextManager[None] = contextlib.nullcontext()
"""What the context managers here are when the process does not trace (or the trace is not sampled)."""

_tracer: Tracer | None = None
_spans: Any = None
"""``dormant._spans`` once this process traces (it imports OpenTelemetry)."""
_inbound: contextvars.ContextVar[tuple[tuple[str, str], ...] | None] = contextvars.ContextVar(
    "dormant_inbound_trace", default=None
)


def tracer() -> Tracer | None:
    """The tracer of Dormant's spans, or None when this process does not trace."""
    found = _tracer
    if found is not None:
        return found
    api = sys.modules.get("opentelemetry.trace")
    if api is None:
        return None  # nobody imported OpenTelemetry here, so nobody set a tracer provider up
    return _resolve(api)


def _resolve(api: ModuleType) -> Tracer | None:
    provider = api.get_tracer_provider()
    if isinstance(provider, (api.ProxyTracerProvider, api.NoOpTracerProvider)):
        return None
    found: Tracer = provider.get_tracer("dormant", getattr(sys.modules.get("dormant"), "__version__", None))
    if isinstance(found, api.NoOpTracer):
        return None  # a provider that does not record (OTEL_SDK_DISABLED)
    _use(found)
    return found


def _use(found: Tracer | None) -> None:
    """Trace with ``found`` from now on (None: stop); tests hand in a tracer of their own provider."""
    global _tracer, _spans
    if found is not None and _spans is None:
        from . import _spans as spans  # lazy: start-up time (OpenTelemetry only where it traces)

        _spans = spans
    _tracer = found


def _reset_for_tests() -> None:
    _use(None)


# --------------------------------------------------------------------------- callers


def invocation(
    service: str,
    function: str,
    *,
    trigger: str,
    headers: Mapping[str, str] | None = None,
    call_id: str | None = None,
) -> AbstractContextManager[Invocation | None]:
    """The gateway's ``function.invoke`` span around one call it makes (its version pick included),
    continuing the trace in ``headers`` (the HTTP request's ``traceparent``) when there is one. The
    ``Client.call`` of ``service.function`` made inside it uses it instead of a span of its own.
    ``trigger`` is its ``faas.trigger``: what made the gateway call (``TRIGGERS``)."""
    found = tracer()
    if found is None:
        return NO_TRACE
    return _spans.Invocation(  # type: ignore[no-any-return]
        found, service, function, headers=headers, trigger=trigger, call_id=call_id, opened=True
    )


def failed(invocation: Invocation | None, error: BaseException) -> None:
    """An error an ``invocation`` block answers (an HTTP error response) instead of raising."""
    if invocation is not None:
        invocation.failed(error)


def client_call(
    service: str, function: str, headers: Mapping[str, str] | None, *, one_way: bool = False
) -> AbstractContextManager[Invocation] | None:
    """The ``function.invoke`` span of a ``Client.call`` (or a one-way send): the gateway's open
    invocation of the same target, or a new one; None when this process does not trace."""
    found = tracer()
    if found is None:
        return None
    opened = _spans.OPEN_INVOCATION.get()
    if opened is not None and not opened.claimed and (opened.service, opened.function) == (service, function):
        opened.claimed = True
        return _spans.Borrowed(opened)  # type: ignore[no-any-return]
    made = _spans.Invocation(found, service, function, headers=headers, one_way=one_way)
    return made  # type: ignore[no-any-return]


def outgoing(headers: Mapping[str, str] | None, invocation: Invocation | None) -> list[tuple[str, str]]:
    """A request's user properties from the caller's ``headers``, with the trace context it goes out
    with: the invocation span's when tracing; else the caller's own ``traceparent`` as given, or the
    context the call being handled here arrived with (passed through unchanged)."""
    if invocation is not None:
        return invocation.headers(headers)
    sent = list(headers.items()) if headers else []
    inbound = _inbound.get()
    if inbound is not None and not (headers and wire.PROP_TRACEPARENT in headers):
        sent.extend(inbound)
    return sent


def route(service: str, alias: str, sticky: bool) -> AbstractContextManager[Route | None]:
    """A ``function.route`` span around one version pick made within a sampled trace (a call's)."""
    found = tracer()
    if found is None or not _spans.parent_sampled():
        return NO_TRACE
    return _spans.Route(found, service, alias, sticky)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- runtimes


def execute(
    call: wire.Call, topic: str, *, version: int | None, coldstart: bool = False
) -> AbstractContextManager[object]:
    """The ``function.execute`` span around one request's handling, a child of the caller's span
    named by the request's trace context (a new trace without one)."""
    found = tracer()
    if found is None:
        return NO_TRACE
    return _spans.Execution(found, call, topic, version, coldstart)  # type: ignore[no-any-return]


def answered(ok: bool, body_json: bytes) -> None:
    """The answer of the call being handled: its outcome goes on the ``function.execute`` span."""
    if _spans is not None:
        _spans.answered(ok, body_json)


def replayed() -> None:
    """The answer of the call being handled comes from the de-duplication store."""
    if _spans is not None:
        _spans.replayed()


def response(call: wire.Call, ok: bool, size: int) -> AbstractContextManager[object]:
    """The ``function.response`` span around publishing the answer of the call being handled."""
    made = None if _spans is None else _spans.response(call, ok, size)
    return NO_TRACE if made is None else made


def enter_handler(headers: Mapping[str, str]) -> contextvars.Token[Any] | None:
    """Before a handler runs: in a process that does not trace, the call's trace context is what the
    handler's own calls carry (passed through); with tracing, the ``function.execute`` span is current
    already and they are its children. Returns what ``leave_handler`` needs."""
    if wire.PROP_TRACEPARENT not in headers or tracer() is not None:
        return None
    kept = wire.trace_context(headers)
    return _inbound.set(tuple(kept.items())) if kept else None


def leave_handler(token: contextvars.Token[Any] | None) -> None:
    if token is not None:
        _inbound.reset(token)


def handler_failed(exc: BaseException) -> None:
    """The handler raised something unexpected: recorded on the ``function.execute`` span."""
    if _spans is not None:
        _spans.handler_failed(exc)
