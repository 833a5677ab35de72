"""Traces across the mesh (issue 13, item 1): one call through the gateway with a caller's
``traceparent`` is one trace at a real OTLP receiver, with the seed's spans in parent order across the
gateway, the SDK client and the runtimes, and the spans of the call its handler makes to another service.

The mesh: Mosquitto, Postgres, a controller, the pods serving ``chain-parent`` (whose ``order`` calls
``chain-child.apply`` through ``ctx.messaging``) and ``chain-child``, and a gateway; the gateway and the
pods' runtimes export with OTLP/HTTP (set by the ``OTEL_*`` variables alone) to the ``rotel`` collector,
which forwards to the test's receiver (``e2e.otlp``); without ``rotel`` installed, straight to the receiver.
"""

from __future__ import annotations

import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from e2e.mesh import Mesh, caller_token
from e2e.otlp import OtlpReceiver, ReceivedSpan, RotelCollector, rotel_binary
from gw_helpers import ROOT, GatewayProcess, new_gateway

from dormant.callid import child_call_id
from dormant_local import ExternalPostgres, LocalPostgres, MosquittoProcess

PARENT = ROOT / "tests" / "fixtures" / "services" / "chain-parent"
CHILD = ROOT / "tests" / "fixtures" / "services" / "chain-child"
API = "/api/v1"

@dataclass
class TracedMesh:
    mesh: Mesh
    gateway: GatewayProcess
    receiver: OtlpReceiver
    collector: RotelCollector | None


@pytest.fixture(scope="module")
def trace_tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dormant-trace-test-") as tmp:
        yield Path(tmp)


@pytest_asyncio.fixture(scope="module")
async def traced_mesh(
    broker: MosquittoProcess, pg: LocalPostgres | ExternalPostgres, trace_tmp: Path
) -> AsyncIterator[TracedMesh]:
    name = f"dormant_trace_{uuid.uuid4().hex[:12]}"
    catalog_url = await pg.create_database(name, exist_ok=False)
    receiver = OtlpReceiver().start()
    collector = RotelCollector(receiver.url, trace_tmp / "rotel.log") if rotel_binary() else None
    mesh = Mesh(broker.url, catalog_url, trace_tmp / "layers", trace_tmp / "pods")
    mesh.work_root.mkdir(parents=True, exist_ok=True)
    gateway: GatewayProcess | None = None
    token = caller_token(mesh.identity.token("tester"))
    token.__enter__()
    try:
        if collector is not None:
            await collector.start()
        otel = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url if collector is None else collector.url,
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # ms: export soon after a span ends
        }
        for source, service in ((CHILD, "chain-child"), (PARENT, "chain-parent")):
            _, version = await mesh.publish(source)
            await mesh.deploy(service, version, replicas=1)
        mesh.start_pod("trace-pod-1", extra_env=otel)
        mesh.start_pod("trace-pod-2", extra_env=otel)
        mesh.start_controller()
        await mesh.wait_serving("chain-child", timeout=120)
        await mesh.wait_serving("chain-parent", timeout=120)
        gateway = new_gateway(mesh, trace_tmp, "gw-trace", **otel)
        await gateway.start()
        yield TracedMesh(mesh, gateway, receiver, collector)
    finally:
        if gateway is not None:
            gateway.stop()
        mesh.stop()
        if collector is not None:
            collector.stop()
        receiver.stop()
        token.__exit__(None, None, None)
        await pg.drop_database(name)


def new_traceparent(flags: str = "01") -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-{flags}", trace_id, span_id


def one(spans: list[ReceivedSpan], name: str, service: str) -> ReceivedSpan:
    """The one span named ``name`` from the process whose ``service.name`` is ``service``."""
    found = [s for s in spans if s.name == name and s.service_name == service]
    shown = [(s.name, s.service_name, s.attributes) for s in spans]
    assert len(found) == 1, f"{len(found)} spans {name} from {service}: {shown}"
    return found[0]


EXPECTED = {
    "function.invoke": 2,
    "function.route": 2,
    "function.execute": 2,
    "function.response": 2,
}


def complete(trace_id: str) -> Callable[[list[ReceivedSpan]], bool]:
    def check(spans: list[ReceivedSpan]) -> bool:
        names = [s.name for s in spans if s.trace_id == trace_id]
        return all(names.count(name) >= count for name, count in EXPECTED.items())

    return check


async def invoke(traced: TracedMesh, traceparent: str, item: str) -> httpx.Response:
    headers = {**traced.gateway.headers("developer"), "traceparent": traceparent, "tracestate": "caller=1"}
    async with httpx.AsyncClient(base_url=traced.gateway.url, headers=headers, timeout=60) as http:
        response = await http.post(f"{API}/functions/chain-parent.order/invoke", json={"item": item})
    assert response.status_code == 200, response.text
    return response


async def test_a_gateway_call_is_one_trace_across_gateway_client_and_runtimes(
    traced_mesh: TracedMesh,
) -> None:
    traceparent, trace_id, caller_span = new_traceparent()
    response = await invoke(traced_mesh, traceparent, "book")
    call_id = response.headers["x-dormant-call-id"]
    spans = await traced_mesh.receiver.wait_for(complete(trace_id), f"the spans of trace {trace_id}")
    spans = [s for s in spans if s.trace_id == trace_id]

    # The gateway: function.invoke continues the caller's span; the version pick is its child.
    invoke_span = one(spans, "function.invoke", service="dormant-gateway")
    assert invoke_span.parent_span_id == caller_span
    assert invoke_span.kind == "CLIENT"
    assert invoke_span.attributes["faas.trigger"] == "http"
    assert invoke_span.attributes["faas.invocation_id"] == call_id
    assert invoke_span.attributes["messaging.system"] == "mqtt"
    assert invoke_span.attributes["dormant.service"] == "chain-parent"
    assert invoke_span.attributes["dormant.function"] == "order"
    assert invoke_span.attributes["messaging.destination.name"].startswith("service/chain-parent/v")
    route = one(spans, "function.route", service="dormant-gateway")
    assert route.parent_span_id == invoke_span.span_id
    assert route.attributes["dormant.version"] == invoke_span.attributes["dormant.version"]

    # chain-parent's runtime: function.execute under the gateway's invoke; function.response under it.
    execute = one(spans, "function.execute", service="chain-parent")
    assert execute.parent_span_id == invoke_span.span_id
    assert execute.kind == "SERVER"
    assert execute.attributes["faas.invocation_id"] == call_id
    assert execute.attributes["faas.trigger"] == "pubsub"
    assert execute.attributes["dormant.function"] == "order"
    assert execute.attributes["dormant.status"] == "ok"
    assert execute.resource["service.version"] == str(execute.attributes["dormant.version"])
    response_span = one(spans, "function.response", service="chain-parent")
    assert response_span.parent_span_id == execute.span_id
    assert response_span.kind == "PRODUCER"

    # The handler's ctx.messaging call: its invoke is a child of the parent's execute span.
    child_id = child_call_id(call_id, "chain-child.apply", 1)
    child_invoke = one(spans, "function.invoke", service="chain-parent")
    assert child_invoke.parent_span_id == execute.span_id
    assert child_invoke.attributes["dormant.service"] == "chain-child"
    assert child_invoke.attributes["faas.invocation_id"] == child_id
    child_route = one(spans, "function.route", service="chain-parent")
    assert child_route.parent_span_id == child_invoke.span_id
    child_execute = one(spans, "function.execute", service="chain-child")
    assert child_execute.parent_span_id == child_invoke.span_id
    assert child_execute.attributes["faas.invocation_id"] == child_id
    child_response = one(spans, "function.response", service="chain-child")
    assert child_response.parent_span_id == child_execute.span_id

    # The caller's tracestate travels with its trace; nothing else was sent to the receiver.
    assert execute.trace_state == "caller=1" and child_execute.trace_state == "caller=1"
    assert not [s for s in spans if s.name == "function.coldstart"]  # nothing waited for a start
    assert traced_mesh.receiver.refused == []


async def test_a_caller_that_does_not_sample_gets_no_spans(traced_mesh: TracedMesh) -> None:
    unsampled, unsampled_trace, _ = new_traceparent("00")
    await invoke(traced_mesh, unsampled, "pen")
    # Spans leave each process in the order they end: once a later call's spans are all in from every
    # process, the earlier call's would be too.
    later, later_trace, _ = new_traceparent()
    await invoke(traced_mesh, later, "ink")
    await traced_mesh.receiver.wait_for(complete(later_trace), f"the spans of trace {later_trace}")
    assert traced_mesh.receiver.spans(unsampled_trace) == []


async def test_a_malformed_traceparent_starts_a_new_trace_at_the_gateway(traced_mesh: TracedMesh) -> None:
    headers = {**traced_mesh.gateway.headers("developer"), "traceparent": "00-not-a-trace-01"}
    async with httpx.AsyncClient(base_url=traced_mesh.gateway.url, headers=headers, timeout=60) as http:
        response = await http.post(f"{API}/functions/chain-parent.order/invoke", json={"item": "cup"})
    assert response.status_code == 200, response.text
    call_id = response.headers["x-dormant-call-id"]

    def gateway_invoke(spans: list[ReceivedSpan]) -> ReceivedSpan | None:
        return next(
            (
                s
                for s in spans
                if s.name == "function.invoke" and s.attributes.get("faas.invocation_id") == call_id
            ),
            None,
        )

    spans = await traced_mesh.receiver.wait_for(
        lambda spans: (found := gateway_invoke(spans)) is not None and complete(found.trace_id)(spans),
        f"the trace of call {call_id}",
    )
    invoke_span = gateway_invoke(spans)
    assert invoke_span is not None
    assert invoke_span.parent_span_id == ""  # a root: the caller's malformed context was ignored
    in_trace = [s for s in spans if s.trace_id == invoke_span.trace_id]
    execute = one(in_trace, "function.execute", "chain-parent")
    assert execute.parent_span_id == invoke_span.span_id

