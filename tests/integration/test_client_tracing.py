"""The SDK client's spans on a real broker, exported by the OTLP/HTTP exporter to a real receiver: a call
that waits for a version to start has a ``function.coldstart`` span (issue 13, item 1).

The waits are the client's own (``dormant.client._Wake``): a service whose retained state says it is
scaled to zero (``stopped``) is woken (``mesh/wake/{svc}``), and a service that says it is ``serving``
while nothing subscribes is between two versions. A stand-in controller and runtime (plain MQTT
clients) play the other side: the runtime subscribes only once the call is waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from e2e.otlp import OtlpReceiver, ReceivedSpan
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from dormant import Client, _tracing, wire
from dormant.transport import Message, Transport, connect_transport
from dormant_local import MosquittoProcess


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


@pytest.fixture
def exported(receiver: OtlpReceiver) -> Iterator[TracerProvider]:
    """This process traces (for this test only), exporting each span to the receiver as it ends."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.url}/v1/traces")))
    _tracing._use(provider.get_tracer("dormant"))
    yield provider
    _tracing._reset_for_tests()
    provider.shutdown()


async def publish_state(broker_url: str, service: str, state: str) -> None:
    transport = await connect_transport(broker_url)
    try:
        await transport.publish(Message(wire.service_state_topic(), b"1", qos=1, retain=True))
        payload = {
            "latest": 1,
            "live": 1,
            "state": state,
            "reason": f"{state} (test)",
            "versions": {"1": {"state": state, "reason": f"{state} (test)"}},
        }
        await transport.publish(
            Message(wire.service_state_topic(service), orjson.dumps(payload), qos=1, retain=True)
        )
    finally:
        await transport.close()


async def clear_state(broker_url: str, service: str) -> None:
    transport = await connect_transport(broker_url)
    try:
        for topic in (wire.service_state_topic(), wire.service_state_topic(service)):
            await transport.publish(Message(topic, b"", qos=1, retain=True))
    finally:
        await transport.close()


async def serve_echo(transport: Transport) -> None:
    """A stand-in runtime: answers every call with its input."""
    async for message in transport.messages():
        call = wire.decode_call(
            message.topic,
            message.payload,
            response_topic=message.response_topic,
            correlation=message.correlation,
            user_properties=message.user_properties,
        )
        payload, props = wire.encode_response(call, True, call.params)
        assert call.reply_to is not None
        await transport.publish(
            Message(call.reply_to, payload, qos=1, correlation=call.correlation, user_properties=props)
        )


@contextlib.asynccontextmanager
async def runtime_when(started: asyncio.Event, broker_url: str, service: str) -> AsyncIterator[None]:
    """Subscribe a stand-in runtime to ``service``'s calls once ``started`` is set."""

    async def run() -> None:
        await started.wait()
        transport = await connect_transport(broker_url)
        try:
            await transport.subscribe([wire.function_topic(service, "+")], qos=1)
            await serve_echo(transport)
        finally:
            await transport.close()

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def cold_start_of(spans: list[ReceivedSpan]) -> tuple[ReceivedSpan, ReceivedSpan] | None:
    invokes = [s for s in spans if s.name == "function.invoke"]
    colds = [s for s in spans if s.name == "function.coldstart"]
    if len(invokes) != 1 or len(colds) != 1:
        return None
    return invokes[0], colds[0]


async def test_a_call_that_wakes_a_service_scaled_to_zero_has_a_cold_start_span(
    broker: MosquittoProcess, receiver: OtlpReceiver, exported: TracerProvider
) -> None:
    service = f"trace-wake-{uuid.uuid4().hex[:8]}"
    await publish_state(broker.url, service, "stopped")
    woken = asyncio.Event()
    try:
        async with Client(broker.url) as controller, Client(broker.url) as client:
            # The stand-in controller: a wake request starts the runtime.
            await controller.listen(wire.wake_topic(service), lambda message: woken.set())
            async with runtime_when(woken, broker.url, service):
                answer = await client.call(service, "echo", {"text": "wake"}, timeout=20)
        assert answer == {"text": "wake"}
        spans = await receiver.wait_for(lambda s: cold_start_of(s) is not None, "the invoke and cold start")
    finally:
        await clear_state(broker.url, service)
    found = cold_start_of(spans)
    assert found is not None
    invoke, cold = found
    assert cold.parent_span_id == invoke.span_id and cold.trace_id == invoke.trace_id
    assert cold.attributes["dormant.coldstart.reason"] == "wake"
    assert cold.attributes["dormant.service"] == service
    assert invoke.attributes["faas.coldstart"] is True
    assert invoke.attributes["dormant.attempts"] >= 2  # published again once the runtime subscribed
    assert invoke.status == "UNSET"
    assert cold.end_ns <= invoke.end_ns  # the cold start ended when a runtime took the call
    assert receiver.refused == []


async def test_a_call_that_waits_out_a_version_switch_has_a_cold_start_span(
    broker: MosquittoProcess, receiver: OtlpReceiver, exported: TracerProvider
) -> None:
    service = f"trace-switch-{uuid.uuid4().hex[:8]}"
    await publish_state(broker.url, service, "serving")
    waiting = asyncio.Event()
    try:
        async with Client(broker.url) as client:

            async def notice_the_wait() -> None:
                while True:
                    if client.retries >= 1:  # published again: the call is waiting for a runtime
                        waiting.set()
                        return
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(notice_the_wait())
            async with runtime_when(waiting, broker.url, service):
                answer = await client.call(service, "echo", {"text": "switch"}, timeout=20)
            watcher.cancel()
        assert answer == {"text": "switch"}
        spans = await receiver.wait_for(lambda s: cold_start_of(s) is not None, "the invoke and cold start")
    finally:
        await clear_state(broker.url, service)
    found = cold_start_of(spans)
    assert found is not None
    invoke, cold = found
    assert cold.parent_span_id == invoke.span_id
    assert cold.attributes["dormant.coldstart.reason"] == "switch"


async def test_an_answered_call_has_no_cold_start_span(
    broker: MosquittoProcess, receiver: OtlpReceiver, exported: TracerProvider
) -> None:
    service = f"trace-warm-{uuid.uuid4().hex[:8]}"
    ready = asyncio.Event()
    ready.set()
    async with Client(broker.url) as client, runtime_when(ready, broker.url, service):
        for _ in range(200):  # until the stand-in runtime has subscribed
            try:
                await client.call(service, "echo", {"text": "x"}, timeout=5)
                break
            except Exception:
                await asyncio.sleep(0.05)
        receiver.clear()
        assert await client.call(service, "echo", {"text": "warm"}, timeout=5) == {"text": "warm"}
    spans = await receiver.wait_for(lambda s: any(x.name == "function.invoke" for x in s), "the invoke span")
    # Its version pick (no route table here: the live topic) and the call; no cold start.
    assert sorted(s.name for s in spans) == ["function.invoke", "function.route"]
    invoke = next(s for s in spans if s.name == "function.invoke")
    assert "faas.coldstart" not in invoke.attributes
