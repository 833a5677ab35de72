"""``dormant.Client`` and the SDK's transports against a secured Mosquitto (dynamic security, callers'
and components' listeners, TLS with the mesh's own CA), private to this module.

A caller (alice, whose password needs percent-encoding in the URL) calls a responder that runs as a
runtime account (``dormant.runtime.svc`` on the components' listener) and gets the answer in her own
inbox ``reply/alice/{clientId}``, over plain MQTT and over TLS with either transport. An anonymous
client and a wrong password fail at once with ``Unauthenticated``; a broker certificate the client
does not trust with ``Unavailable``. Two clients of one caller account share one session (the callers'
listener uses the user name as client id): the newer one wins and the older one stops, instead of the
two taking the session from each other for ever. Mutual TLS (a client certificate) is shown against a
TLS server of the test's own, since ``dormant_local``'s broker has no client-certificate mode yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from dormant import wire
from dormant.client import Client
from dormant.config import BROKER_CA_FILE_ENV, BROKER_CERT_FILE_ENV, BROKER_KEY_FILE_ENV
from dormant.errors import Unauthenticated, Unavailable
from dormant.transport import CLIENT_ENV, SESSION_TAKEN_OVER, Message, NativeTransport, TransportError
from dormant_local import MosquittoProcess
from dormant_local.broker_security import SecurityPlan, TlsFiles

SERVICE = "svc"
ALICE_PASSWORD = "p@ss:w/o%rd?#&+ é"
"""Every character that must be percent-encoded in a URL's user information, and a non-ASCII one."""


@pytest.fixture(scope="module")
def plan() -> SecurityPlan:
    plan = SecurityPlan.for_mesh(services=[SERVICE], callers=["bob"])
    plan.add_caller("alice", ALICE_PASSWORD)
    return plan


@pytest_asyncio.fixture(scope="module")
async def secured(
    plan: SecurityPlan, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MosquittoProcess]:
    async with MosquittoProcess(data_dir=tmp_path_factory.mktemp("sdk-secured"), security=plan) as broker:
        yield broker


@pytest_asyncio.fixture(scope="module")
async def tls_broker(
    plan: SecurityPlan, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MosquittoProcess]:
    data_dir = tmp_path_factory.mktemp("sdk-tls")
    async with MosquittoProcess(data_dir=data_dir, security=plan, tls=True) as broker:
        yield broker


def ca_of(broker: MosquittoProcess) -> TlsFiles:
    assert broker.tls_files is not None
    return broker.tls_files


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TLS files and the default transport unless a test sets them."""
    for name in (BROKER_CA_FILE_ENV, BROKER_CERT_FILE_ENV, BROKER_KEY_FILE_ENV, CLIENT_ENV):
        monkeypatch.delenv(name, raising=False)


@contextlib.asynccontextmanager
async def runtime_responder(broker: MosquittoProcess, plan: SecurityPlan) -> AsyncIterator[list[str]]:
    """A runtime of ``svc`` logged in as its runtime account: answers every call with the topic it
    answered on; yields the list of those reply topics."""
    transport = NativeTransport(
        broker.url_for(plan.runtime(SERVICE)), client_id=f"dormant-{SERVICE}-v1-s{uuid.uuid4().hex[:6]}"
    )
    await transport.connect()
    await transport.subscribe([f"$share/g/service/{SERVICE}/#"], qos=1)
    replied: list[str] = []

    async def serve() -> None:
        async for message in transport.messages():
            call = wire.decode_call(
                message.topic,
                message.payload,
                response_topic=message.response_topic,
                correlation=message.correlation,
                user_properties=message.user_properties,
                expiry_s=message.expiry_s,
            )
            if call.reply_to is None:
                continue
            body = orjson.dumps({"function": call.function, "replyTo": call.reply_to})
            payload, props = wire.encode_response_json(call, True, body)
            # Noted before the publish: the caller can have the answer (and the test end, cancelling this
            # task) before the broker's PUBACK reaches this publish.
            replied.append(call.reply_to)
            await transport.publish(
                Message(call.reply_to, payload, qos=1, correlation=call.correlation, user_properties=props)
            )

    task = asyncio.create_task(serve())
    try:
        yield replied
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, TransportError):
            await task
        await transport.close()


# --------------------------------------------------------------------------- calls as an account


async def test_a_caller_is_answered_in_its_own_inbox(secured: MosquittoProcess, plan: SecurityPlan) -> None:
    url = secured.url_for(plan.account("alice"))
    assert "%40" in url and ALICE_PASSWORD not in url  # the URL carries the password percent-encoded
    async with runtime_responder(secured, plan) as replied, Client(url, timeout=15) as alice:
        assert alice.username == "alice"
        answer = await alice.call(SERVICE, "echo", {})
    assert answer == {"function": "echo", "replyTo": f"reply/alice/{alice.client_id}"}
    assert replied == [f"reply/alice/{alice.client_id}"]


async def test_a_runtime_account_calls_from_its_own_inbox(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    """A runtime's outgoing client (components' listener, its own client id) reads
    ``reply/dormant.runtime.{svc}/{clientId}``, which its account's caller rules allow."""
    url = secured.url_for(plan.runtime(SERVICE))
    async with (
        runtime_responder(secured, plan),
        Client(url, client_id=f"dormant-{SERVICE}-v1-s0-out", timeout=15) as runtime,
    ):
        answer = await runtime.call(SERVICE, "echo", {})
    assert answer["replyTo"] == f"reply/dormant.runtime.{SERVICE}/dormant-{SERVICE}-v1-s0-out"


@pytest.mark.parametrize("transport", ["native", "aiomqtt"])
async def test_a_call_over_tls(
    tls_broker: MosquittoProcess, plan: SecurityPlan, monkeypatch: pytest.MonkeyPatch, transport: str
) -> None:
    monkeypatch.setenv(BROKER_CA_FILE_ENV, str(ca_of(tls_broker).ca_cert))
    url = tls_broker.url_for(plan.account("alice"))
    assert url.startswith("mqtts://")
    async with runtime_responder(tls_broker, plan) as replied:  # the runtime over TLS too (native)
        monkeypatch.setenv(CLIENT_ENV, transport)
        async with Client(url, timeout=15) as alice:
            answer = await alice.call(SERVICE, "echo", {})
    assert answer == {"function": "echo", "replyTo": f"reply/alice/{alice.client_id}"}
    assert replied == [answer["replyTo"]]


async def test_tls_needs_the_mesh_ca_and_the_brokers_name(
    tls_broker: MosquittoProcess, plan: SecurityPlan, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    alice = plan.account("alice")
    # The system's trust store does not know the mesh CA.
    with pytest.raises(Unavailable, match="TLS certificate is refused") as caught:
        await Client(tls_broker.url_for(alice), timeout=15).connect()
    assert ALICE_PASSWORD not in str(caught.value) and "alice:***@" in caught.value.details["broker"]
    # The mesh CA, but an address the certificate does not name: the broker's certificate served on
    # 127.0.0.2 (the certificate is for 127.0.0.1 and localhost).
    files = ca_of(tls_broker)
    monkeypatch.setenv(BROKER_CA_FILE_ENV, str(files.ca_cert))
    impostor_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    impostor_context.load_cert_chain(files.server_cert, files.server_key)
    impostor = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.2", 0, ssl=impostor_context)
    try:
        elsewhere = alice.url("127.0.0.2", impostor.sockets[0].getsockname()[1], tls=True)
        with pytest.raises(Unavailable, match=r"TLS certificate is refused.*(mismatch|127\.0\.0\.2)"):
            await Client(elsewhere, timeout=15).connect()
    finally:
        impostor.close()
        await impostor.wait_closed()
    # A CA file that is not there.
    monkeypatch.setenv(BROKER_CA_FILE_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(Unavailable, match="cannot read the broker CA file"):
        await Client(tls_broker.url_for(alice), timeout=15).connect()


# --------------------------------------------------------------------------- refusals


async def test_an_anonymous_client_is_unauthenticated_at_once(secured: MosquittoProcess) -> None:
    for port in (secured.port, secured.component_port):
        async with asyncio.timeout(15):  # a refusal, not a hang or a retry loop
            with pytest.raises(Unauthenticated, match="refused an anonymous client") as caught:
                await Client(f"mqtt://127.0.0.1:{port}", timeout=15).connect()
        assert caught.value.details["reasonCode"] in (0x86, 0x87)


async def test_a_wrong_password_is_unauthenticated_and_never_shown(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    wrong = plan.account("alice").url(secured.host, secured.port).replace("p%40ss", "q%40ss")
    async with asyncio.timeout(15):
        with pytest.raises(Unauthenticated, match="refused the broker user 'alice'") as caught:
            await Client(wrong, timeout=15).connect()
    assert "q@ss" not in repr(caught.value) and "q%40ss" not in repr(caught.value)
    assert caught.value.details["broker"] == f"mqtt://alice:***@127.0.0.1:{secured.port}"


# --------------------------------------------------------------------------- one session per caller
# Mosquitto before 2.0.15 closes the taken-over connection without the DISCONNECT 0x8E that MQTT 5 asks
# for (eclipse-mosquitto/mosquitto#2607), so the client has to tell the fight from the pattern of losses.


async def test_a_second_client_of_one_caller_account_takes_the_session_and_the_first_stops(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    url = secured.url_for(plan.account("alice"))
    async with runtime_responder(secured, plan), Client(url, timeout=15) as first:
        await first.call(SERVICE, "echo", {})
        async with Client(url, timeout=15) as second:
            # The broker gave both the client id "alice": the second connection took the session, and
            # one client gave up instead of taking it back. A broker that says so (0x8E) makes it the
            # first; older Mosquitto closes silently, and then the one whose losses add up first stops
            # (usually the first; a reconnect that fails under load restarts a count), never neither.
            assert first._connection is not None and second._connection is not None
            done, _ = await asyncio.wait(
                {asyncio.shield(first._connection), asyncio.shield(second._connection)},
                timeout=60,
                return_when=asyncio.FIRST_COMPLETED,
            )
            assert done, "neither client gave the session up"
            loser, survivor = (first, second) if first._connection.done() else (second, first)
            with pytest.raises(Unavailable, match="took its broker session over") as caught:
                await loser.call(SERVICE, "echo", {})
            if "reasonCode" in caught.value.details:  # Mosquitto 2.0.15 and later, EMQX: it was told
                assert caught.value.details["reasonCode"] == SESSION_TAKEN_OVER and loser is first
            else:  # older Mosquitto closes the connection without a word: the client saw the fight
                assert "without a reason 3 times in a row" in caught.value.message
            # The survivor keeps its one connection: nobody takes the session back from it. (When the
            # other gave up, the survivor may still be subscribing on the connection that won: a call
            # waits for it, then the connection is the one it keeps.)
            await survivor.call(SERVICE, "echo", {})
            connection = survivor._transport
            assert connection is not None
            for _ in range(3):
                answer = await survivor.call(SERVICE, "echo", {})
                assert answer["replyTo"] == f"reply/alice/{survivor.client_id}"
            assert survivor._transport is connection


# --------------------------------------------------------------------------- mutual TLS


def client_certificate(directory: Path, common_name: str) -> tuple[Path, Path, Path]:
    """A CA of its own and a client certificate it signed: (CA, certificate, key) PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test client CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "client-ca.pem", directory / "client.pem", directory / "client.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


CONNACK_ACCEPTED = bytes([0x20, 0x03, 0x00, 0x00, 0x00])  # MQTT 5: no session, success, no properties


async def test_a_client_certificate_is_presented_when_configured(
    tls_broker: MosquittoProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A TLS server that requires a client certificate and accepts any CONNECT: it sees the
    certificate of ``$DORMANT_BROKER_CERT_FILE``; without one, the connection is refused."""
    server_files = ca_of(tls_broker)  # a server certificate for 127.0.0.1 from the mesh CA
    client_ca, client_cert, client_key = client_certificate(tmp_path, "dormant.runtime.svc")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(client_ca))
    server_context.load_cert_chain(server_files.server_cert, server_files.server_key)
    server_context.verify_mode = ssl.CERT_REQUIRED
    peers: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            await reader.readexactly(2)  # the CONNECT's first bytes: the handshake is done
            peer = writer.get_extra_info("peercert")
            peers.append(dict(field[0] for field in peer["subject"])["commonName"])
            writer.write(CONNACK_ACCEPTED)
            await writer.drain()
            await reader.read()  # until the client disconnects
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]
    try:
        monkeypatch.setenv(BROKER_CA_FILE_ENV, str(server_files.ca_cert))
        monkeypatch.setenv(BROKER_CERT_FILE_ENV, str(client_cert))
        monkeypatch.setenv(BROKER_KEY_FILE_ENV, str(client_key))
        transport = NativeTransport(f"mqtts://127.0.0.1:{port}", client_id="dormant-mtls")
        await transport.connect()
        await transport.close()
        assert peers == ["dormant.runtime.svc"]
        monkeypatch.delenv(BROKER_CERT_FILE_ENV)
        monkeypatch.delenv(BROKER_KEY_FILE_ENV)
        without = NativeTransport(f"mqtts://127.0.0.1:{port}", client_id="dormant-no-cert")
        with pytest.raises(TransportError):
            await without.connect()
        assert peers == ["dormant.runtime.svc"]
    finally:
        server.close()
        await server.wait_closed()
