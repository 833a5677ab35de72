"""A secured private Mosquitto (dynamic security, two listeners) refuses whoever does not belong.

Every refusal is asserted on the wire with Dormant's own MQTT 5 client: CONNACK, SUBACK and PUBACK
reason codes, and, for refused publishes, that a subscriber allowed to read everything never gets
them (it does get the permitted message published right after, so it was listening).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import stat
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from dormant.mqtt import Message, MqttConnection, MqttError, ReasonCode, connect
from dormant_local import MosquittoProcess
from dormant_local.broker_security import (
    CONTROL_RESPONSE_TOPIC,
    CONTROL_TOPIC,
    CREDENTIALS_FILE,
    DYNSEC_FILE,
    BrokerAccount,
    SecurityPlan,
)

SERVICE = "svc"
OTHER_SERVICE = "other"
NOT_AUTHORIZED = ReasonCode.NOT_AUTHORIZED  # 0x87
REFUSED_CONNECT = (0x86, 0x87)  # bad user name or password, not authorized (2.0.11 says 0x87)


@pytest.fixture(scope="module")
def plan() -> SecurityPlan:
    return SecurityPlan.for_mesh(services=[SERVICE, OTHER_SERVICE], callers=["alice", "bob"])


@pytest_asyncio.fixture(scope="module")
async def secured(
    plan: SecurityPlan, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MosquittoProcess]:
    process = MosquittoProcess(data_dir=tmp_path_factory.mktemp("secured-broker"), security=plan)
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


@contextlib.asynccontextmanager
async def connected(
    broker: MosquittoProcess,
    account: BrokerAccount | None,
    *,
    port: int | None = None,
    client_id: str | None = None,
    session_expiry_s: int = 0,
) -> AsyncIterator[MqttConnection]:
    if port is None:
        port = broker.port if account is None or account.kind == "caller" else broker.component_port
    conn = await connect(
        broker.host,
        port,
        client_id=client_id or f"t-{uuid.uuid4().hex[:12]}",
        username=account.username if account else None,
        password=account.password if account else None,
        clean_start=True,
        session_expiry_s=session_expiry_s,
    )
    try:
        yield conn
    finally:
        await conn.disconnect(session_expiry_s=0)


async def refused_connect(
    broker: MosquittoProcess, port: int, *, username: str | None = None, password: str | None = None
) -> int:
    """The CONNACK reason code of a connection attempt the broker must refuse."""
    with pytest.raises(MqttError) as caught:
        conn = await connect(
            broker.host, port, client_id=f"t-{uuid.uuid4().hex[:8]}", username=username, password=password
        )
        await conn.disconnect()
    assert caught.value.reason is not None
    return caught.value.reason


async def next_message(conn: MqttConnection, within: float = 10.0) -> Message:
    async with asyncio.timeout(within):
        message = await conn.queue.get()
    assert message is not None, "the connection closed"
    return message


# --------------------------------------------------------------------------- files


def test_files_are_private_and_hold_no_clear_password(secured: MosquittoProcess, plan: SecurityPlan) -> None:
    dynsec = secured.data_dir / DYNSEC_FILE
    credentials = secured.data_dir / CREDENTIALS_FILE
    for path in (dynsec, credentials):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = dynsec.read_text()
    for account in plan.accounts:
        assert account.password not in text
        assert account.password not in repr(account)
        assert account.password not in repr(plan)
    assert "allow_anonymous false" in secured.config_file.read_text()
    assert "allow_anonymous true" not in secured.config_file.read_text()


# --------------------------------------------------------------------------- connecting


async def test_anonymous_connect_is_refused_on_both_listeners(secured: MosquittoProcess) -> None:
    for port in (secured.port, secured.component_port):
        assert await refused_connect(secured, port) in REFUSED_CONNECT


async def test_wrong_password_and_unknown_user_are_refused(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    alice = plan.account("alice")
    runtime = plan.runtime(SERVICE)
    assert await refused_connect(secured, secured.port, username="alice", password="wrong") in REFUSED_CONNECT
    assert (
        await refused_connect(
            secured, secured.component_port, username=runtime.username, password=alice.password
        )
        in REFUSED_CONNECT
    )
    assert await refused_connect(secured, secured.port, username="mallory", password="x") in REFUSED_CONNECT


async def test_every_account_logs_in_with_its_url(secured: MosquittoProcess, plan: SecurityPlan) -> None:
    from dormant.transport import connect_transport

    for account in plan.accounts:
        transport = await connect_transport(secured.url_for(account), client_id=account.pinned_client_id)
        await transport.close()


# --------------------------------------------------------------------------- subscribing


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "+/#",
        "reply/#",
        "reply/+/#",
        "reply/bob/#",
        "reply/bob",
        "$share/x/service/svc/#",
        f"$share/{SERVICE}-v1/service/{SERVICE}/v1/+",
        "service/svc/#",
        "service/#",
        "mesh/#",
        "mesh/stats/#",
        "$SYS/#",
        "$CONTROL/dynamic-security/#",
    ],
)
async def test_a_caller_may_not_subscribe(
    secured: MosquittoProcess, plan: SecurityPlan, topic_filter: str
) -> None:
    async with connected(secured, plan.account("alice")) as alice:
        with pytest.raises(MqttError) as caught:
            await alice.subscribe([topic_filter])
        assert caught.value.reason == NOT_AUTHORIZED
        assert alice.is_open  # a refused SUBSCRIBE is a SUBACK reason, not a disconnect


async def test_a_caller_may_subscribe_its_inbox_and_the_mesh_state(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    async with connected(secured, plan.account("alice")) as alice:
        granted = await alice.subscribe(
            ["reply/alice/#", "reply/alice/x/+", "mesh/routes/+", "mesh/services/+", "mesh/services"]
        )
    assert granted == [1, 1, 1, 1, 1]


async def test_a_runtime_may_subscribe_only_its_own_shared_topics(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    async with connected(secured, plan.runtime(SERVICE)) as runtime:
        granted = await runtime.subscribe(
            [
                f"$share/{SERVICE}-v1/service/{SERVICE}/v1/+",
                f"$share/{SERVICE}/service/{SERVICE}/+",
                f"$share/{SERVICE}/service/{SERVICE}",
            ]
        )
        assert granted == [1, 1, 1]
        for refused in (
            f"$share/{OTHER_SERVICE}/service/{OTHER_SERVICE}/+",
            f"service/{SERVICE}/#",
            "reply/#",
            "mesh/stats/#",
        ):
            with pytest.raises(MqttError) as caught:
                await runtime.subscribe([refused])
            assert caught.value.reason == NOT_AUTHORIZED, refused


# --------------------------------------------------------------------------- publishing


async def test_refused_publishes_never_reach_a_subscriber_that_reads_everything(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    refused_by_caller = [
        "mesh/routes/svc",
        "mesh/stats/svc/v1/pod",
        "mesh/services/svc",
        "mesh/services",
        "mesh/events/x",
        "reply/bob/x",
    ]
    refused_by_runtime = ["mesh/routes/svc", f"mesh/stats/{OTHER_SERVICE}/v1/pod", "mesh/services/svc"]
    async with (
        connected(secured, plan.account("dormant.admin")) as admin,
        connected(secured, plan.account("alice")) as alice,
        connected(secured, plan.runtime(SERVICE)) as runtime,
    ):
        assert await admin.subscribe(["#"]) == [1]
        for sender, topics in ((alice, refused_by_caller), (runtime, refused_by_runtime)):
            for topic in topics:
                with pytest.raises(MqttError) as caught:
                    await sender.publish(Message(topic, b"forged", qos=1, retain=True))
                assert caught.value.reason == NOT_AUTHORIZED, topic
            # Permitted, after the refused ones: the admin gets it, and nothing before it.
            marker = f"reply/{'alice' if sender is alice else 'bob'}/marker-{uuid.uuid4().hex[:6]}"
            await sender.publish(Message(marker, b"marker", qos=1))
            received = await next_message(admin)
            assert (received.topic, received.payload) == (marker, b"marker")
        # A runtime's own stats go through.
        await runtime.publish(Message(f"mesh/stats/{SERVICE}/v1/pod", b"{}", qos=0))
        received = await next_message(admin)
        assert received.topic == f"mesh/stats/{SERVICE}/v1/pod"
    # Nothing forged was retained either: a fresh reader of the mesh state gets no message from it.
    async with connected(secured, plan.account("bob")) as bob:
        await bob.subscribe(["mesh/routes/+", "mesh/services/+", "mesh/services", "reply/bob/#"])
        await bob.publish(Message("reply/bob/barrier", b"", qos=1))
        received = await next_message(bob)
        assert received.topic == "reply/bob/barrier"


async def test_only_the_controller_publishes_routes(secured: MosquittoProcess, plan: SecurityPlan) -> None:
    topic = f"mesh/routes/{SERVICE}"
    async with connected(secured, plan.account("dormant.controller")) as controller:
        await controller.publish(Message(topic, b'{"live": {"1": 100}}', qos=1, retain=True))
    try:
        async with connected(secured, plan.account("alice")) as alice:
            await alice.subscribe([topic])
            received = await next_message(alice)
            assert (received.topic, received.payload) == (topic, b'{"live": {"1": 100}}')
    finally:
        async with connected(secured, plan.account("dormant.controller")) as controller:
            await controller.publish(Message(topic, b"", qos=1, retain=True))


# --------------------------------------------------------------------------- client ids and calls


async def answer_calls(runtime: MqttConnection) -> None:
    """A minimal runtime: answer every request on its response topic with the same correlation data."""
    while True:
        message = await runtime.queue.get()
        if message is None:
            return
        if message.response_topic:
            await runtime.publish(
                Message(
                    message.response_topic,
                    b'{"echo": ' + message.payload + b"}",
                    qos=1,
                    correlation=message.correlation,
                    user_properties=[("status", "ok")],
                )
            )


@contextlib.asynccontextmanager
async def serving_runtime(
    secured: MosquittoProcess, plan: SecurityPlan, client_id: str
) -> AsyncIterator[MqttConnection]:
    async with connected(
        secured, plan.runtime(SERVICE), client_id=client_id, session_expiry_s=300
    ) as runtime:
        await runtime.subscribe([f"$share/{SERVICE}-v1/service/{SERVICE}/v1/+"])
        task = asyncio.create_task(answer_calls(runtime))
        try:
            yield runtime
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, MqttError):
                await task


async def call(caller: MqttConnection, username: str, payload: bytes) -> Message:
    correlation = uuid.uuid4().bytes
    reply_to = f"reply/{username}/{uuid.uuid4().hex[:8]}"
    await caller.subscribe([f"{reply_to}/#"])
    reason = await caller.publish(
        Message(
            f"service/{SERVICE}/v1/echo", payload, qos=1, response_topic=reply_to, correlation=correlation
        )
    )
    assert reason == 0, f"no subscriber took the request (PUBACK reason {reason:#x})"
    answer = await next_message(caller)
    assert answer.correlation == correlation
    return answer


async def test_a_permitted_round_trip(secured: MosquittoProcess, plan: SecurityPlan) -> None:
    async with (
        serving_runtime(secured, plan, f"dormant-{SERVICE}-v1-s9"),
        connected(secured, plan.account("alice")) as alice,
        connected(secured, plan.account("bob")) as bob,
    ):
        await bob.subscribe(["reply/bob/#"])
        answer = await call(alice, "alice", b"1")
        assert answer.payload == b'{"echo": 1}'
        assert ("status", "ok") in list(answer.user_properties)
        # Bob saw nothing of it: his own barrier is the first message he gets.
        await bob.publish(Message("reply/bob/barrier", b"", qos=1))
        assert (await next_message(bob)).topic == "reply/bob/barrier"


async def test_a_caller_cannot_take_a_runtimes_client_id(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    runtime_id = f"dormant-{SERVICE}-v1-s0"
    alice = plan.account("alice")
    async with serving_runtime(secured, plan, runtime_id) as runtime:
        # On the callers' listener the broker replaces the id with the user name: accepted, harmless.
        async with connected(secured, alice, client_id=runtime_id) as impostor:
            answer = await call(impostor, "alice", b"2")
            assert answer.payload == b'{"echo": 2}'
        # On the components' listener a caller is pinned to its user name as client id: refused.
        assert (
            await refused_connect(
                secured, secured.component_port, username=alice.username, password=alice.password
            )
            in REFUSED_CONNECT
        )
        with pytest.raises(MqttError) as caught:
            await connect(
                secured.host,
                secured.component_port,
                client_id=runtime_id,
                username=alice.username,
                password=alice.password,
            )
        assert caught.value.reason in REFUSED_CONNECT
        # The runtime kept its connection and its session: a request still reaches it.
        assert runtime.is_open and runtime.disconnect_reason is None
        async with connected(secured, plan.account("bob")) as bob:
            answer = await call(bob, "bob", b"3")
            assert answer.payload == b'{"echo": 3}'
        assert runtime.is_open


# --------------------------------------------------------------------------- mosquitto_rr


@pytest.fixture
def mosquitto_rr() -> Iterator[str]:
    found = shutil.which("mosquitto_rr")
    assert found is not None, "mosquitto_rr is missing: deploy/bootstrap.sh installs mosquitto-clients"
    yield found


def run_rr(executable: str, port: int, *credentials: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            executable,
            "-V",
            "5",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            *credentials,
            "-t",
            f"service/{SERVICE}/v1/echo",
            "-e",
            "reply/alice/rr",
            "-m",
            "7",
            "-W",
            "10",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def test_mosquitto_rr_with_and_without_credentials(
    secured: MosquittoProcess, plan: SecurityPlan, mosquitto_rr: str
) -> None:
    alice = plan.account("alice")
    async with serving_runtime(secured, plan, f"dormant-{SERVICE}-v1-s8"):
        done = await asyncio.to_thread(
            run_rr, mosquitto_rr, secured.port, "-u", alice.username, "-P", alice.password
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == '{"echo": 7}'
        anonymous = await asyncio.to_thread(run_rr, mosquitto_rr, secured.port)
        assert anonymous.returncode != 0
        assert "not authori" in (anonymous.stderr + anonymous.stdout).lower()
        wrong = await asyncio.to_thread(run_rr, mosquitto_rr, secured.port, "-u", "alice", "-P", "wrong")
        assert wrong.returncode != 0


def test_default_broker_is_unchanged(tmp_path: Path) -> None:
    process = MosquittoProcess(data_dir=tmp_path)
    assert process.security is None and process.component_port == process.port


# --------------------------------------------------------------------------- TLS


@pytest_asyncio.fixture
async def tls_broker(plan: SecurityPlan, tmp_path: Path) -> AsyncIterator[MosquittoProcess]:
    process = MosquittoProcess(data_dir=tmp_path / "tls-broker", security=plan, tls=True)
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


async def tls_runtime_answers(
    broker: MosquittoProcess, account: BrokerAccount, subscribed: asyncio.Event
) -> None:
    """A runtime over TLS (paho through aiomqtt: Dormant's own client has no TLS): answer one call."""
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    assert broker.tls_files is not None
    context = ssl.create_default_context(cafile=str(broker.tls_files.ca_cert))
    async with aiomqtt.Client(
        "127.0.0.1",
        broker.component_port,
        username=account.username,
        password=account.password,
        identifier=f"dormant-{SERVICE}-v1-s7",
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=context,
    ) as runtime:
        await runtime.subscribe(f"$share/{SERVICE}-v1/service/{SERVICE}/v1/+", qos=1)
        subscribed.set()
        async for message in runtime.messages:
            received = message.properties
            answer = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            answer.CorrelationData = getattr(received, "CorrelationData", b"")
            reply_to = getattr(received, "ResponseTopic")  # noqa: B009 - paho sets it dynamically
            await runtime.publish(
                reply_to, b'{"tls": ' + bytes(message.payload) + b"}", qos=1, properties=answer
            )
            return


async def test_tls_listeners(tls_broker: MosquittoProcess, plan: SecurityPlan, mosquitto_rr: str) -> None:
    files = tls_broker.tls_files
    assert files is not None
    assert stat.S_IMODE(files.server_key.stat().st_mode) == 0o600
    assert tls_broker.url.startswith("mqtts://")
    assert tls_broker.url_for(plan.account("alice")).startswith("mqtts://")
    # Plain MQTT on a TLS listener gets no CONNACK.
    for port in (tls_broker.port, tls_broker.component_port):
        with pytest.raises(MqttError):
            await connect(tls_broker.host, port, client_id="t-plain", timeout=3.0)
    # The certificate verifies against the mesh CA for 127.0.0.1 and localhost; TLS 1.2 and 1.3 work.
    for host, newest in (("127.0.0.1", ssl.TLSVersion.TLSv1_2), ("localhost", ssl.TLSVersion.TLSv1_3)):
        context = ssl.create_default_context(cafile=str(files.ca_cert))
        context.maximum_version = newest
        _, writer = await asyncio.open_connection(host, tls_broker.port, ssl=context, server_hostname=host)
        assert writer.get_extra_info("ssl_object").version() == newest.name.replace("_", ".")
        writer.close()
    # A client that does not trust the mesh CA refuses the broker's certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        await asyncio.open_connection("127.0.0.1", tls_broker.port, ssl=ssl.create_default_context())
    # A whole call over TLS: mosquitto_rr as alice on the callers' listener, a runtime on the other.
    subscribed = asyncio.Event()
    runtime = asyncio.create_task(tls_runtime_answers(tls_broker, plan.runtime(SERVICE), subscribed))
    try:
        async with asyncio.timeout(15):
            await subscribed.wait()
        alice = plan.account("alice")
        done = await asyncio.to_thread(
            run_rr,
            mosquitto_rr,
            tls_broker.port,
            "--cafile",
            str(files.ca_cert),
            "-u",
            alice.username,
            "-P",
            alice.password,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == '{"tls": 7}'
        async with asyncio.timeout(15):
            await runtime
    finally:
        runtime.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runtime


async def test_a_restart_keeps_ports_accounts_and_refusals(plan: SecurityPlan, tmp_path: Path) -> None:
    async with MosquittoProcess(data_dir=tmp_path / "restarted", security=plan) as broker:
        ports = (broker.port, broker.component_port)
        await broker.restart()
        assert (broker.port, broker.component_port) == ports
        async with connected(broker, plan.runtime(SERVICE)) as runtime:
            assert await runtime.subscribe([f"$share/{SERVICE}/service/{SERVICE}/+"]) == [1]
        assert await refused_connect(broker, broker.port) in REFUSED_CONNECT


async def test_an_account_added_to_a_running_broker(tmp_path: Path) -> None:
    plan = SecurityPlan.for_mesh(services=[SERVICE], callers=["alice"])
    async with MosquittoProcess(data_dir=tmp_path / "live", security=plan) as broker:
        late = plan.add_runtime("late-service")
        carol = plan.add_caller("carol")
        async with connected(broker, plan.account("dormant.admin")) as admin:
            await admin.subscribe([CONTROL_RESPONSE_TOPIC])
            for account in (late, carol):
                payload = json.dumps(plan.control_commands(account)).encode()
                await admin.publish(Message(CONTROL_TOPIC, payload, qos=1))
                answer = json.loads((await next_message(admin)).payload)
                # Only a shared role that exists already ("caller") may be refused.
                errors = [r for r in answer["responses"] if "error" in r]
                assert all(r["command"] == "createRole" and "exist" in r["error"].lower() for r in errors), (
                    errors
                )
                assert len(errors) == (1 if account is carol else 0)
        async with connected(broker, late) as runtime:
            assert await runtime.subscribe(["$share/late-service/service/late-service/+"]) == [1]
            with pytest.raises(MqttError):
                await runtime.subscribe([f"$share/{SERVICE}/service/{SERVICE}/+"])
        async with connected(broker, carol) as carol_conn:
            assert await carol_conn.subscribe(["reply/carol/#"]) == [1]
            with pytest.raises(MqttError):
                await carol_conn.subscribe(["reply/alice/#"])
        assert (
            await refused_connect(broker, broker.component_port, username="carol", password=carol.password)
            in REFUSED_CONNECT
        )
