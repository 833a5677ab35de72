"""Random payloads, properties, topics and envelope shapes at a live runtime: it never crashes, every
answer is a typed error (or a result), and a good call still succeeds afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from e2e.mesh import PROBE, Mesh, running_mesh
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dormant import Client, errors
from dormant.transport import Message, NativeTransport
from dormant_local import MosquittoProcess

TOPICS = [
    "service/probe-service/echo",
    "service/probe-service/explode",
    "service/probe-service",
    "service/probe-service/v1/echo",
    "service/probe-service/v1/explode",
    "service/probe-service/nope",
    "service/probe-service/v1/nope",
    "service/probe-service/v99",
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
echo_like = st.fixed_dictionaries({}, optional={"text": json_values, "extra": json_values})
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "messageId": json_values,
        "callId": json_values,
        "headers": json_values,
        "body": json_values
        | st.fixed_dictionaries(
            {"function": st.sampled_from(["echo", "explode", "nope", "v1"]) | json_values},
            optional={"parameters": json_values | echo_like},
        ),
    },
)
payloads = st.one_of(
    st.binary(max_size=200),
    json_values.map(orjson.dumps),
    echo_like.map(orjson.dumps),
    envelopes.map(orjson.dumps),
)
# MQTT strings may not hold control characters or non-characters (a broker drops the connection).
mqtt_text = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Cn")), max_size=20)
user_properties = st.lists(
    st.tuples(
        st.sampled_from(["deadline", "authorization", "traceparent", "tracestate", "x"]) | mqtt_text,
        mqtt_text
        | st.integers(0, 2**45).map(str)
        | st.integers(-(10**500), 10**500).map(str)  # an overflowing deadline must be a typed error
        | st.sampled_from(
            ["1" + "0" * 400, "\uff11\uff12", "1e3", "00-" + "a" * 32 + "-" + "b" * 16 + "-01"]
        ),
    ),
    max_size=4,
)


class Prober:
    """One MQTT connection that sends raw requests and collects the answers by correlation."""

    def __init__(self, broker_url: str) -> None:
        self.transport = NativeTransport(broker_url)
        self.inbox = f"reply/fuzz-{uuid.uuid4().hex[:8]}"
        self.answers: dict[bytes, asyncio.Future[Message]] = {}
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.transport.connect()
        await self.transport.subscribe([self.inbox])
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.transport.messages():
            future = self.answers.get(message.correlation or b"")
            if future is not None and not future.done():
                future.set_result(message)

    async def ask(
        self, topic: str, payload: bytes, props: list[tuple[str, str]], expiry: int | None
    ) -> Message:
        correlation = uuid.uuid4().bytes
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.answers[correlation] = future
        reason = await self.transport.publish(
            Message(
                topic,
                payload,
                response_topic=self.inbox,
                correlation=correlation,
                user_properties=props,
                expiry_s=expiry,
            )
        )
        assert reason == 0, f"nobody subscribed to {topic}"
        try:
            return await asyncio.wait_for(future, 10)
        finally:
            self.answers.pop(correlation, None)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.transport.close()


@pytest_asyncio.fixture(scope="module")
async def probe_mesh(
    broker: MosquittoProcess, pg: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Mesh, Prober]]:
    name = f"dormant_fuzz_{uuid.uuid4().hex[:8]}"
    catalog_url = await pg.create_database(name)
    try:
        with running_mesh(broker.url, catalog_url, tmp_path_factory.mktemp("fuzz")) as mesh:
            service, version = await mesh.publish(PROBE)
            await mesh.deploy(service, version, replicas=1)
            mesh.start_pod("pod-fuzz")
            await mesh.wait_serving(service)
            prober = Prober(mesh.broker_url)
            await prober.start()
            yield mesh, prober
            await prober.close()
    finally:
        await pg.drop_database(name)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    topic=st.sampled_from(TOPICS),
    payload=payloads,
    props=user_properties,
    expiry=st.none() | st.integers(1, 100),
)
async def test_random_requests_get_typed_answers(
    probe_mesh: tuple[Mesh, Prober],
    topic: str,
    payload: bytes,
    props: list[tuple[str, str]],
    expiry: int | None,
) -> None:
    _, prober = probe_mesh
    if b'"replyTo"' in payload:  # an envelope may redirect its answer; keep it in our inbox
        payload = payload.replace(b'"replyTo"', b'"replyT0"')
    answer = await prober.ask(topic, payload, props, expiry)
    status = dict(answer.user_properties).get("status")
    assert status in ("ok", "error")
    body = orjson.loads(answer.payload)
    if topic == "service/probe-service":  # the envelope topic answers in the envelope shape
        assert body["headers"]["status"] == status
        body = body["body"]
    if status == "error":
        assert body["type"] in errors.ERROR_TYPES and isinstance(body["message"], str)
        assert "Traceback" not in body["message"]


async def test_the_runtime_still_serves_after_the_fuzzing(probe_mesh: tuple[Mesh, Prober]) -> None:
    mesh, _ = probe_mesh
    async with Client(mesh.broker_url, timeout=10) as client:
        assert (await client.call("probe-service", "echo", {"text": "still here"}))["text"] == "still here"
    assert mesh.pods["pod-fuzz"].poll() is None  # the pod (and its runtime) never went down
    assert "restarting it" not in mesh.pod_log("pod-fuzz")  # the runtime never crashed
