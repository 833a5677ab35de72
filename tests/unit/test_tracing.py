"""Trace context in and out of calls (``dormant._tracing``, ``dormant._spans``) and the processes'
tracing settings (``dormant_telemetry.tracing``).

Spans are recorded by an OpenTelemetry SDK tracer provider local to each test (an in-memory exporter),
handed to the SDK as its tracer; the process's global provider is never set here, so other tests in
the session keep running untraced.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from dormant import Client, UserContext, _tracing, wire
from dormant.messaging import Messaging
from dormant_telemetry.tracing import configure_tracing, sampler_from_env, tracing_enabled

ROOT = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-01"
UNSAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-00"
MALFORMED = [
    f"00-{TRACE_ID.upper()}-{PARENT_ID}-01",  # uppercase
    f"00-{'0' * 32}-{PARENT_ID}-01",  # an all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",  # an all-zero parent id
    f"ff-{TRACE_ID}-{PARENT_ID}-01",  # the forbidden version
    f"00-{TRACE_ID}-{PARENT_ID}",  # no flags
    f"00-{TRACE_ID}-{PARENT_ID}-01-extra",
    "not a traceparent",
]


class Recorder:
    def __init__(self, sampler: Sampler) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]


UseTracer = Callable[[Sampler], Recorder]


@pytest.fixture
def use_tracer() -> Iterator[UseTracer]:
    """A function that makes the SDK trace with a new provider using the given sampler."""

    def use(sampler: Sampler) -> Recorder:
        recorder = Recorder(sampler)
        _tracing._use(recorder.provider.get_tracer("dormant"))
        return recorder

    yield use
    _tracing._reset_for_tests()


@pytest.fixture
def traced(use_tracer: UseTracer) -> Recorder:
    return use_tracer(ParentBased(ALWAYS_ON))


def parsed(traceparent: str) -> tuple[str, str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    return trace_id, span_id, flags


def decode(
    payload: bytes, properties: list[tuple[str, str]] | tuple[()] = (), topic: str = "service/svc/fn"
) -> wire.Call:
    return wire.decode_call(
        topic, payload, response_topic="reply/caller", correlation=b"call-1", user_properties=properties
    )


# --------------------------------------------------------------------------- the wire rule


def test_the_wire_keeps_only_w3c_trace_context() -> None:
    assert wire.trace_context({"traceparent": SAMPLED, "tracestate": "a=1", "x": "y"}) == {
        "traceparent": SAMPLED,
        "tracestate": "a=1",
    }
    for bad in MALFORMED:
        assert wire.trace_context({"traceparent": bad, "tracestate": "a=1"}) == {}, bad
    assert wire.trace_context({"tracestate": "a=1"}) == {}  # no tracestate without a traceparent
    assert wire.trace_context({"traceparent": SAMPLED, "tracestate": "a" * 513}) == {"traceparent": SAMPLED}


@pytest.mark.parametrize("bad", MALFORMED)
def test_malformed_trace_context_in_a_request_is_dropped_in_both_forms(bad: str) -> None:
    native = decode(b"{}", [("traceparent", bad), ("tracestate", "a=1")])
    assert "traceparent" not in native.headers and "tracestate" not in native.headers
    envelope = decode(
        orjson.dumps({"headers": {"traceparent": bad}, "body": {"function": "fn", "parameters": {}}}),
        topic="service/svc",
    )
    assert "traceparent" not in envelope.headers


# --------------------------------------------------------------------------- not tracing


def test_without_a_tracer_provider_nothing_is_traced_and_no_span_is_made() -> None:
    assert _tracing.tracer() is None
    assert _tracing.client_call("svc", "fn", {"traceparent": SAMPLED}) is None
    assert _tracing.invocation("svc", "fn", trigger="http") is _tracing.NO_TRACE
    assert _tracing.route("svc", "live", False) is _tracing.NO_TRACE
    assert _tracing.execute(decode(b"{}"), "service/svc/fn", version=1) is _tracing.NO_TRACE
    assert _tracing.response(decode(b"{}"), True, 2) is _tracing.NO_TRACE


def test_without_tracing_a_callers_trace_context_is_sent_as_given() -> None:
    headers = {"traceparent": SAMPLED, "tracestate": "a=1", "x-other": "1"}
    assert _tracing.outgoing(headers, None) == list(headers.items())
    assert _tracing.outgoing(None, None) == []


def test_without_tracing_a_handlers_calls_carry_the_context_its_call_arrived_with() -> None:
    token = _tracing.enter_handler({"traceparent": SAMPLED, "tracestate": "a=1", "authorization": "x"})
    try:
        assert _tracing.outgoing({"x-mine": "1"}, None) == [
            ("x-mine", "1"),
            ("traceparent", SAMPLED),
            ("tracestate", "a=1"),
        ]
        # A traceparent the handler gives itself is sent instead.
        mine = f"00-{'1' * 32}-{'2' * 16}-01"
        assert _tracing.outgoing({"traceparent": mine}, None) == [("traceparent", mine)]
    finally:
        _tracing.leave_handler(token)
    assert _tracing.outgoing({}, None) == []
    assert _tracing.enter_handler({"traceparent": MALFORMED[0]}) is None  # nothing malformed passes


def test_an_untraced_process_never_imports_opentelemetry() -> None:
    """The SDK's calls, the in-process dispatcher and the wire, with trace context on the call: the
    OpenTelemetry API is never imported when no tracer provider is set up."""
    script = f"""
import sys
from dormant import Client, _tracing, messaging, wire
from dormant.testing import TestClient

with TestClient({str(ROOT / "tests/fixtures/services/probe-service")!r}) as client:
    answer = client.call_sync("echo", {{"text": "hi"}}, headers={{"traceparent": {SAMPLED!r}}})
assert answer["text"] == "hi", answer
assert _tracing.tracer() is None
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("libs/python",))}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- callers


def test_a_call_continues_the_callers_trace_and_names_its_invoke_span_as_the_parent(
    traced: Recorder,
) -> None:
    traced_call = _tracing.client_call("svc", "fn", {"traceparent": SAMPLED, "tracestate": "k=v"})
    assert traced_call is not None
    with traced_call as invocation:
        invocation.sending("service/svc/v3/fn", 3, "call-7")
        sent = dict(_tracing.outgoing({"traceparent": SAMPLED, "tracestate": "k=v", "x": "1"}, invocation))
    (span,) = traced.spans()
    assert span.name == "function.invoke" and span.kind is SpanKind.CLIENT
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert f"{span.parent.span_id:016x}" == PARENT_ID and span.parent.is_remote
    trace_id, span_id, flags = parsed(sent["traceparent"])
    assert (trace_id, span_id, flags) == (TRACE_ID, f"{span.context.span_id:016x}", "01")
    assert sent["tracestate"] == "k=v" and sent["x"] == "1"
    assert dict(span.attributes or {}) == {
        "messaging.system": "mqtt",
        "messaging.operation.type": "send",
        "messaging.operation.name": "publish",
        "messaging.destination.name": "service/svc/v3/fn",
        "faas.invocation_id": "call-7",
        "dormant.service": "svc",
        "dormant.function": "fn",
        "dormant.version": 3,
    }


@pytest.mark.parametrize("bad", MALFORMED)
def test_a_malformed_callers_traceparent_is_ignored(traced: Recorder, bad: str) -> None:
    traced_call = _tracing.client_call("svc", "fn", {"traceparent": bad})
    assert traced_call is not None
    with traced_call as invocation:
        sent = dict(_tracing.outgoing({"traceparent": bad}, invocation))
    (span,) = traced.spans()
    assert span.parent is None and span.context is not None
    assert f"{span.context.trace_id:032x}" != TRACE_ID
    ours = (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    assert parsed(sent["traceparent"])[:2] == ours


def test_a_failed_call_records_its_error_type(traced: Recorder) -> None:
    from dormant.errors import NotFound

    traced_call = _tracing.client_call("svc", "fn", None)
    assert traced_call is not None
    with pytest.raises(NotFound), traced_call:
        raise NotFound("no such function")
    (span,) = traced.spans()
    assert span.status.status_code.name == "ERROR"
    assert (span.attributes or {})["error.type"] == "NotFound"


def test_the_gateways_invocation_holds_its_route_pick_and_its_client_call(traced: Recorder) -> None:
    caller = {"traceparent": SAMPLED}
    with _tracing.invocation("svc", "fn", trigger="http", headers=caller, call_id="c1") as opened:
        with _tracing.route("svc", "live", False) as route:
            assert route is not None
            route.picked(2)
        borrowed = _tracing.client_call("svc", "fn", {"traceparent": SAMPLED})
        assert borrowed is not None
        with borrowed as invocation:
            assert invocation is opened  # one function.invoke for the request, not two
            sent = dict(_tracing.outgoing({"traceparent": SAMPLED}, invocation))
        other = _tracing.client_call("svc", "fn", None)  # a second call in the block: its own span
        assert other is not None and other.__enter__() is not opened
        other.__exit__(None, None, None)
    invokes = traced.named("function.invoke")
    assert len(invokes) == 2
    gateway = next(s for s in invokes if (s.attributes or {}).get("faas.trigger") == "http")
    (route_span,) = traced.named("function.route")
    assert gateway.context is not None and gateway.parent is not None
    assert f"{gateway.parent.span_id:016x}" == PARENT_ID
    assert route_span.parent is not None and route_span.parent.span_id == gateway.context.span_id
    assert (route_span.attributes or {})["dormant.version"] == 2
    assert parsed(sent["traceparent"])[1] == f"{gateway.context.span_id:016x}"
    assert (gateway.attributes or {})["faas.invocation_id"] == "c1"


def test_a_wait_for_a_version_to_start_is_the_cold_start_span(traced: Recorder) -> None:
    traced_call = _tracing.client_call("svc", "fn", None)
    assert traced_call is not None
    with traced_call as invocation:
        invocation.waiting("wake")
        invocation.waiting("wake")  # published again: still the one cold start
        invocation.delivered()
    (cold,) = traced.named("function.coldstart")
    (invoke,) = traced.named("function.invoke")
    assert invoke.context is not None and cold.parent is not None
    assert cold.parent.span_id == invoke.context.span_id
    assert (cold.attributes or {})["dormant.coldstart.reason"] == "wake"
    assert (invoke.attributes or {})["faas.coldstart"] is True


# --------------------------------------------------------------------------- runtimes


def test_a_request_s_user_properties_make_execute_a_child_of_the_callers_span(traced: Recorder) -> None:
    call = decode(b'{"a": 1}', [("traceparent", SAMPLED), ("tracestate", "k=v")])
    with _tracing.execute(call, "service/svc/v2/fn", version=2, coldstart=True):
        token = _tracing.enter_handler(call.headers)
        child = _tracing.client_call("other", "g", None)
        assert child is not None
        with child as invocation:
            sent = dict(_tracing.outgoing(None, invocation))
        _tracing.leave_handler(token)
        _tracing.answered(True, b"{}")
        with _tracing.response(call, True, 2):
            pass
    (execute,) = traced.named("function.execute")
    (response,) = traced.named("function.response")
    (invoke,) = traced.named("function.invoke")
    assert execute.kind is SpanKind.SERVER and response.kind is SpanKind.PRODUCER
    assert execute.context is not None and execute.parent is not None
    assert f"{execute.context.trace_id:032x}" == TRACE_ID and f"{execute.parent.span_id:016x}" == PARENT_ID
    assert execute.context.trace_state.get("k") == "v"  # the caller's tracestate goes on
    assert response.parent is not None and response.parent.span_id == execute.context.span_id
    assert invoke.parent is not None and invoke.parent.span_id == execute.context.span_id
    assert parsed(sent["traceparent"])[0] == TRACE_ID and sent.get("tracestate") == "k=v"
    attributes = dict(execute.attributes or {})
    assert attributes["faas.invocation_id"] == "call-1" and attributes["faas.trigger"] == "pubsub"
    assert attributes["faas.coldstart"] is True and attributes["dormant.version"] == 2
    assert attributes["messaging.destination.name"] == "service/svc/v2/fn"
    assert attributes["dormant.status"] == "ok"
    assert (response.attributes or {})["messaging.destination.name"] == "reply/caller"


def test_an_envelope_s_headers_carry_the_trace_context(traced: Recorder) -> None:
    envelope = {
        "callId": "env-1",
        "headers": {"traceparent": SAMPLED},
        "body": {"function": "fn", "parameters": {}},
    }
    call = decode(orjson.dumps(envelope), topic="service/svc")
    with _tracing.execute(call, "service/svc", version=1):
        _tracing.answered(False, b'{"type": "BusinessLogicError", "message": "no"}')
    (execute,) = traced.spans()
    assert execute.parent is not None and f"{execute.parent.span_id:016x}" == PARENT_ID
    attributes = dict(execute.attributes or {})
    assert attributes["dormant.envelope"] is True and attributes["faas.invocation_id"] == "env-1"
    assert attributes["error.type"] == "BusinessLogicError"
    assert execute.status.status_code.name == "ERROR"


def test_a_request_without_trace_context_starts_a_trace(traced: Recorder) -> None:
    with _tracing.execute(decode(b"{}"), "service/svc/fn", version=None):
        pass
    (execute,) = traced.spans()
    assert execute.parent is None


# --------------------------------------------------------------------------- sampling


def test_a_caller_s_decision_not_to_sample_is_honoured_down_the_chain(use_tracer: UseTracer) -> None:
    recorder = use_tracer(ParentBased(ALWAYS_ON))
    call = decode(b"{}", [("traceparent", UNSAMPLED)])
    with _tracing.execute(call, "service/svc/fn", version=1):
        child = _tracing.client_call("other", "g", None)
        assert child is not None
        with child as invocation:
            sent = dict(_tracing.outgoing(None, invocation))
    assert recorder.spans() == []  # nothing recorded, nothing exported
    trace_id, _, flags = parsed(sent["traceparent"])
    assert (trace_id, flags) == (TRACE_ID, "00")  # the next process is told not to sample either


def test_a_ratio_sampler_decides_new_traces_and_follows_sampled_callers(use_tracer: UseTracer) -> None:
    recorder = use_tracer(ParentBased(TraceIdRatioBased(0.0)))
    for _ in range(20):
        with _tracing.execute(decode(b"{}"), "service/svc/fn", version=1):
            pass
    assert recorder.spans() == []  # 0 %: no new trace is sampled
    with _tracing.execute(decode(b"{}", [("traceparent", SAMPLED)]), "service/svc/fn", version=1):
        pass
    assert len(recorder.spans()) == 1  # a sampled caller's trace is followed


# --------------------------------------------------------------------------- settings


def described(sampler: Sampler) -> str:
    return str(sampler.get_description())


def test_the_sampler_settings_take_effect_or_are_refused() -> None:
    ratio_of = "parentbased_traceidratio"
    assert described(sampler_from_env({})) == described(ParentBased(ALWAYS_ON))
    ratio = sampler_from_env({"OTEL_TRACES_SAMPLER": ratio_of, "OTEL_TRACES_SAMPLER_ARG": "0.1"})
    assert described(ratio) == described(ParentBased(TraceIdRatioBased(0.1)))
    plain = sampler_from_env({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"})
    assert described(plain) == described(TraceIdRatioBased(0.5))
    with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER="):
        sampler_from_env({"OTEL_TRACES_SAMPLER": "jaeger_remote"})
    for arg in ("1.5", "-0.1", "ten percent"):
        with pytest.raises(ValueError, match="OTEL_TRACES_SAMPLER_ARG"):
            sampler_from_env({"OTEL_TRACES_SAMPLER": ratio_of, "OTEL_TRACES_SAMPLER_ARG": arg})


def test_tracing_is_on_only_with_an_endpoint_and_not_disabled() -> None:
    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert not tracing_enabled({})
    assert tracing_enabled(endpoint)
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})
    assert not tracing_enabled({**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not tracing_enabled({**endpoint, "OTEL_TRACES_EXPORTER": "none"})


def test_settings_the_exporter_cannot_honour_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(ValueError, match="http/protobuf"):
        configure_tracing("test")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValueError, match="otlp"):
        configure_tracing("test")


def test_without_an_endpoint_no_provider_is_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert configure_tracing("test") is None


# --------------------------------------------------------------------------- one-way sends


class PublishingClient:
    """What ``Messaging.send`` needs of a ``dormant.Client``: ``publish``, recorded."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, str]]] = []

    async def publish(self, topic: str, payload: bytes, **kwargs: Any) -> int:
        self.published.append((topic, dict(kwargs["user_properties"])))
        return 0


async def test_a_one_way_send_is_a_producer_span_under_the_handlers_execute_span(traced: Recorder) -> None:
    client = PublishingClient()
    messaging = Messaging(cast(Client, client), UserContext(), "parent-1")
    with _tracing.execute(decode(b"{}", [("traceparent", SAMPLED)]), "service/svc/fn", version=1):
        call_id = await messaging.send("other.notify", {"n": 1})
    ((topic, properties),) = client.published
    (send,) = traced.named("function.invoke")
    (execute,) = traced.named("function.execute")
    assert topic == "service/other/notify" and send.kind is SpanKind.PRODUCER
    assert send.context is not None and execute.context is not None and send.parent is not None
    assert send.parent.span_id == execute.context.span_id
    assert parsed(properties["traceparent"])[:2] == (TRACE_ID, f"{send.context.span_id:016x}")
    assert (send.attributes or {})["faas.invocation_id"] == call_id


async def test_without_tracing_a_one_way_send_passes_the_calls_context_on() -> None:
    client = PublishingClient()
    messaging = Messaging(cast(Client, client), UserContext(), "parent-1")
    token = _tracing.enter_handler({"traceparent": SAMPLED})
    try:
        await messaging.send("other.notify", {"n": 1})
    finally:
        _tracing.leave_handler(token)
    ((_, properties),) = client.published
    assert properties["traceparent"] == SAMPLED


def test_a_version_pick_outside_a_call_makes_no_span(traced: Recorder) -> None:
    assert _tracing.route("svc", "live", False) is _tracing.NO_TRACE
    assert traced.spans() == []
