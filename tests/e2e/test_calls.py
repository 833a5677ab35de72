"""End to end on real Postgres, Mosquitto and pods: publish → deploy → call, and every typed error."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from dormant import BusinessLogicError, Client, NotFound, SystemError, ValidationError, wire
from dormant.callid import CallId
from dormant.transport import AiomqttTransport, Message
from dormant_local import MosquittoProcess

from .mesh import EXAMPLE, PROBE, Mesh, running_mesh


@pytest_asyncio.fixture(scope="module")
async def served(
    broker: MosquittoProcess, pg: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Mesh]:
    """The example and the probe service, each published and deployed on its own pod."""
    name = f"dormant_e2e_{uuid.uuid4().hex[:12]}"
    catalog_url = await pg.create_database(name)  # type: ignore[attr-defined]
    try:
        with running_mesh(broker.url, catalog_url, tmp_path_factory.mktemp("served")) as mesh:
            for service_dir, pod in ((EXAMPLE, "pod-users"), (PROBE, "pod-probe")):
                service, version = await mesh.publish(service_dir)
                await mesh.deploy(service, version, replicas=1)
                mesh.start_pod(pod)
            await mesh.wait_serving("user-service")
            await mesh.wait_serving("probe-service")
            yield mesh
    finally:
        await pg.drop_database(name)  # type: ignore[attr-defined]


@pytest_asyncio.fixture
async def client(served: Mesh) -> AsyncIterator[Client]:
    async with Client(served.broker_url, timeout=10) as c:
        yield c


def _email() -> str:
    return f"u{uuid.uuid4().hex[:10]}@example.com"


async def test_publish_deploy_call_returns_the_result(client: Client) -> None:
    email = _email()
    created = await client.call("user-service", "createUser", {"email": email, "name": "Ann"})
    assert set(created) == {"userId"}
    user = await client.call("user-service", "getUser", {"userId": created["userId"]})
    assert user["email"] == email and user["name"] == "Ann" and user["userId"] == created["userId"]


async def test_the_live_version_answers_on_its_version_topic_too(client: Client) -> None:
    created = await client.call("user-service", "createUser", {"email": _email(), "name": "Vee"}, version=1)
    assert "userId" in created


async def _mosquitto_rr(mesh: Mesh, topic: str, body: Any, *extra: str) -> Any:
    port = mesh.broker_url.rsplit(":", 1)[1]
    out = await asyncio.to_thread(
        subprocess.run,
        [
            "mosquitto_rr",
            "-V",
            "5",
            "-p",
            port,
            "-t",
            topic,
            "-e",
            f"reply/rr-{uuid.uuid4().hex[:8]}",
            "-m",
            json.dumps(body),
            "-W",
            "5",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


async def test_mosquitto_rr_gets_the_same_answer(client: Client, served: Mesh) -> None:
    created = await client.call("user-service", "createUser", {"email": _email(), "name": "Rr"})
    expected = await client.call("user-service", "getUser", {"userId": created["userId"]})
    token = served.identity.token("tester")
    bearer = ("-D", "PUBLISH", "user-property", "authorization", f"Bearer {token}")
    got = await _mosquitto_rr(served, "service/user-service/getUser", {"userId": created["userId"]}, *bearer)
    assert got == expected
    # Without a token, or with one that is not a JWT of the trusted issuer, the runtime refuses.
    anonymous = await _mosquitto_rr(served, "service/user-service/getUser", {"userId": created["userId"]})
    assert anonymous["type"] == "Unauthenticated"
    # Another user's token is verified, and that user does not see the record (row-level security).
    other = ("-D", "PUBLISH", "user-property", "authorization", f"Bearer {served.identity.token('eve')}")
    hidden = await _mosquitto_rr(
        served, "service/user-service/getUser", {"userId": created["userId"]}, *other
    )
    assert hidden["type"] == "NotFound"
    forged = ("-D", "PUBLISH", "user-property", "authorization", "Bearer not-a-jwt")
    refused = await _mosquitto_rr(served, "service/user-service/getUser", {"userId": "x"}, *forged)
    assert refused["type"] == "Unauthenticated"


async def test_envelope_form_gets_an_envelope_answer(served: Mesh) -> None:
    async with AiomqttTransport(served.broker_url) as transport:
        inbox = f"reply/{uuid.uuid4().hex[:8]}/response"  # replies go only under reply/
        await transport.subscribe([inbox])
        payload = wire.encode_envelope_request(
            "createUser",
            {"email": _email(), "name": "Env"},
            call_id="env-1",
            reply_to=inbox,
            headers={"authorization": f"Bearer {served.identity.token('env-user')}"},
        )
        await transport.publish(Message(wire.envelope_topic("user-service"), payload))
        message = await asyncio.wait_for(anext(aiter(transport.messages())), 10)
    answer = json.loads(message.payload)
    assert answer["callId"] == "env-1" and answer["headers"]["status"] == "ok" and "userId" in answer["body"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"email": "not-an-email", "name": "Ann"}, "email"),
        ({"email": "ann@example.com", "name": "x" * 101}, "name"),
        ({"email": "ann@example.com"}, ""),
    ],
)
async def test_schema_violation_is_a_validation_error_naming_the_field(
    client: Client, params: dict[str, str], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        await client.call("user-service", "createUser", params)
    paths = [e["path"] for e in info.value.details["errors"]]
    assert field in paths
    if field:
        assert field in info.value.message
    else:
        assert "'name' is a required property" in info.value.message


async def test_business_rule_is_a_business_logic_error(client: Client) -> None:
    email = _email()
    await client.call("user-service", "createUser", {"email": email, "name": "Once"})
    with pytest.raises(BusinessLogicError, match="already exists"):
        await client.call("user-service", "createUser", {"email": email, "name": "Twice"})


async def test_unknown_function_is_not_found(client: Client) -> None:
    with pytest.raises(NotFound) as info:
        await client.call("user-service", "deleteEverything", {})
    assert info.value.details["functions"] == ["createUser", "getUser", "grantRead"]


async def test_handler_exception_is_a_system_error_without_traceback(client: Client, served: Mesh) -> None:
    call_id = f"explode-{uuid.uuid4().hex[:8]}"
    with pytest.raises(SystemError) as info:
        await client.call("probe-service", "explode", {}, call_id=call_id)
    text = json.dumps(info.value.to_payload())
    assert "hunter2" not in text and "Traceback" not in text and "RuntimeError" not in text
    assert info.value.details == {"callId": call_id}
    await asyncio.sleep(0.2)
    logs = "".join(served.pod_log(pod) for pod in served.pods)  # either pod may hold the probe's slot
    assert call_id in logs and "RuntimeError" in logs  # the operator can find it by callId


async def _raw_call(broker_url: str, topic: str, payload: bytes) -> tuple[bytes, dict[str, str]]:
    async with AiomqttTransport(broker_url) as transport:
        inbox = f"reply/raw-{uuid.uuid4().hex[:8]}"
        await transport.subscribe([inbox + "/#"])
        await transport.publish(Message(topic, payload, response_topic=inbox, correlation=CallId.new().data))
        message = await asyncio.wait_for(anext(aiter(transport.messages())), 15)
    return message.payload, dict(message.user_properties)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b'{"email": ', "not valid JSON"),
        (b'["a", "list"]', "must be a JSON object"),
        (b"42", "must be a JSON object"),
        (b'{"pad": "' + b"x" * (wire.MAX_PAYLOAD_BYTES + 10) + b'"}', "byte limit"),
    ],
    ids=["malformed-json", "array", "number", "over-6MB"],
)
async def test_bad_payloads_get_typed_errors_and_the_runtime_keeps_serving(
    served: Mesh, client: Client, payload: bytes, fragment: str
) -> None:
    body, props = await _raw_call(served.broker_url, "service/user-service/createUser", payload)
    assert props["status"] == "error"
    error = json.loads(body)
    assert error["type"] == "ValidationError" and fragment in error["message"]
    assert "userId" in await client.call("user-service", "createUser", {"email": _email(), "name": "After"})


async def test_many_concurrent_calls_all_answered(client: Client) -> None:
    results = await asyncio.gather(
        *(client.call("probe-service", "echo", {"text": f"m{i}"}) for i in range(200))
    )
    assert [r["text"] for r in results] == [f"m{i}" for i in range(200)]


async def test_a_slow_call_does_not_hold_up_others(client: Client) -> None:
    slow = asyncio.create_task(client.call("probe-service", "sleep", {"ms": 1500}))
    fast = await client.call("probe-service", "echo", {"text": "quick"})
    assert fast["text"] == "quick" and not slow.done()
    assert await slow == {}
