"""``dormant dev``'s broker lets no one in where they do not belong (issue 11's acceptance).

One ``dormant dev`` (the example, user-service) serves every test here. Against it, on the wire with
Dormant's own MQTT 5 client: an anonymous client is refused on both listeners; the developer's caller
account (what the README's commands use) may not subscribe to everything, to every inbox, to another
user's or a runtime's inbox or to the service's shared topics (SUBACK 0x87), nor publish route tables,
stats or events (PUBACK 0x87 at QoS 1); connecting with a runtime's client id does not take the
runtime's session (a call still works after). ``mosquitto_rr`` with the README's credentials gets an
answer and without them is refused. The files holding passwords are 0600 and the banner holds none.
"""

from __future__ import annotations

import json
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dormant.mqtt import Message, MqttError, ReasonCode, connect
from dormant_local.broker_security import CREDENTIALS_FILE

from .dev_mesh import DevMesh, dormant, run_rr, running_dev

pytestmark = pytest.mark.slow

NOT_AUTHORIZED = ReasonCode.NOT_AUTHORIZED  # 0x87
REFUSED_CONNECT = (0x86, 0x87)  # bad user name or password; not authorized (Mosquitto 2.0.11 says 0x87)
SERVICE = "user-service"
RUNTIME_CLIENT_ID = f"dormant-{SERVICE}-v1-s0-g1"  # the serving runtime's (slot 0, generation 1, of v1)
CREATE = ("call", f"{SERVICE}.createUser")


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevMesh]:
    with running_dev(tmp_path_factory.mktemp("dev-broker-security")) as mesh:
        yield mesh


def create_user(mesh: DevMesh) -> None:
    email = f"u-{uuid.uuid4().hex[:8]}@example.com"
    done = dormant(mesh, *CREATE, json.dumps({"email": email, "name": "Sec"}))
    assert done.returncode == 0, done.stderr
    assert "userId" in json.loads(done.stdout)


async def refused_connect(
    mesh: DevMesh, port: int, *, username: str | None = None, password: str | None = None
) -> int:
    with pytest.raises(MqttError) as caught:
        conn = await connect(
            mesh.host, port, client_id=f"t-{uuid.uuid4().hex[:8]}", username=username, password=password
        )
        await conn.disconnect()
    assert caught.value.reason is not None
    return caught.value.reason


# --------------------------------------------------------------------------- files and output


def test_passwords_are_in_private_files_only(dev: DevMesh) -> None:
    for path in (dev.state / "env.sh", dev.state / "mesh.json", dev.state / "mosquitto" / CREDENTIALS_FILE):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    credentials = json.loads((dev.state / "mosquitto" / CREDENTIALS_FILE).read_text())
    assert credentials["developer"]["kind"] == "caller"
    assert {"dormant.controller", "dormant.gateway", "dormant.admin", "dormant.runtimes"} <= set(credentials)
    assert dev.user == "developer"
    assert credentials["developer"]["password"] == dev.password
    for entry in credentials.values():
        assert entry["password"] not in dev.output  # the banner and every child's log line
    config = (dev.state / "mosquitto" / "mosquitto.conf").read_text()
    assert "allow_anonymous false" in config and "allow_anonymous true" not in config


# --------------------------------------------------------------------------- connecting


async def test_anonymous_and_wrong_logins_are_refused(dev: DevMesh) -> None:
    for port in (dev.callers_port, dev.components_port):
        assert await refused_connect(dev, port) in REFUSED_CONNECT
    assert (
        await refused_connect(dev, dev.callers_port, username="developer", password="wrong")
        in REFUSED_CONNECT
    )


# --------------------------------------------------------------------------- subscribing


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "reply/#",
        "reply/+/#",
        "reply/alice/#",  # another user's inbox
        "reply/dormant.gateway/#",  # the gateway's inbox
        "reply/dormant.runtimes/#",  # the runtimes' inbox (their calls to other services)
        f"$share/{SERVICE}/service/{SERVICE}/+",  # the service's shared topic, as its runtimes hold it
        f"$share/x/service/{SERVICE}/#",
        f"service/{SERVICE}/#",
        "mesh/stats/#",
        "events/#",
        "$CONTROL/dynamic-security/#",
    ],
)
async def test_the_developer_may_not_subscribe(dev: DevMesh, topic_filter: str) -> None:
    conn = await connect(
        dev.host, dev.callers_port, client_id="any", username=dev.user, password=dev.password
    )
    try:
        with pytest.raises(MqttError) as caught:
            await conn.subscribe([topic_filter])
        assert caught.value.reason == NOT_AUTHORIZED
        # Its own inbox and the mesh state are allowed: the refusal above was about the topic.
        assert await conn.subscribe([f"reply/{dev.user}/#", "mesh/routes/+"]) == [1, 1]
    finally:
        await conn.disconnect()


# --------------------------------------------------------------------------- publishing


@pytest.mark.parametrize(
    "topic",
    [
        "mesh/routes/x",
        f"mesh/routes/{SERVICE}",
        "mesh/stats/x",
        f"mesh/stats/{SERVICE}/v1/dev-pod-1",
        f"mesh/services/{SERVICE}",
        "events/notifications",
        "reply/alice/x",
    ],
)
async def test_the_developer_may_not_publish(dev: DevMesh, topic: str) -> None:
    conn = await connect(
        dev.host, dev.callers_port, client_id="any", username=dev.user, password=dev.password
    )
    try:
        with pytest.raises(MqttError) as caught:
            await conn.publish(Message(topic, b'{"live": {"9": 100}}', qos=1, retain=True))
        assert caught.value.reason == NOT_AUTHORIZED
        assert conn.is_open
    finally:
        await conn.disconnect()


# --------------------------------------------------------------------------- client ids


async def test_a_runtimes_client_id_cannot_be_taken(dev: DevMesh) -> None:
    create_user(dev)
    # On the callers' listener the broker replaces the id with the user name: accepted, and harmless.
    conn = await connect(
        dev.host, dev.callers_port, client_id=RUNTIME_CLIENT_ID, username=dev.user, password=dev.password
    )
    await conn.disconnect()
    # On the components' listener a caller account is pinned to its user name as client id: refused.
    with pytest.raises(MqttError) as caught:
        await connect(
            dev.host,
            dev.components_port,
            client_id=RUNTIME_CLIENT_ID,
            username=dev.user,
            password=dev.password,
        )
    assert caught.value.reason in REFUSED_CONNECT
    # The runtime kept its session: a call still reaches it.
    create_user(dev)


# --------------------------------------------------------------------------- mosquitto_rr


def test_mosquitto_rr_with_the_readmes_credentials_and_without(dev: DevMesh) -> None:
    answered = run_rr(dev, "-u", dev.user, "-P", dev.password)
    assert answered.returncode == 0, answered.stderr
    assert "userId" in json.loads(answered.stdout)
    anonymous = run_rr(dev)
    assert anonymous.returncode != 0
    assert "not authori" in (anonymous.stderr + anonymous.stdout).lower()
    wrong = run_rr(dev, "-u", dev.user, "-P", "wrong")
    assert wrong.returncode != 0


# --------------------------------------------------------------------------- the components' accounts


def test_status_reads_the_live_stats_as_the_admin(dev: DevMesh) -> None:
    create_user(dev)
    done = dormant(dev, "status", SERVICE, "--json", "--listen", "2")
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)["stats"]
    assert stats, "no mesh/stats window was read"
    assert any(window["pods"] for window in stats.values())


# --------------------------------------------------------------------------- the opt-out


async def test_insecure_broker_is_open_and_says_so(tmp_path: Path) -> None:
    with running_dev(tmp_path, "--insecure-broker") as open_dev:
        assert "WARNING: --insecure-broker" in open_dev.output
        assert "DORMANT_BROKER_PASSWORD" not in open_dev.env_sh
        assert "adminBrokerUrl" not in open_dev.mesh
        conn = await connect(open_dev.host, open_dev.callers_port, client_id=f"t-{uuid.uuid4().hex[:8]}")
        try:
            assert await conn.subscribe(["#"]) == [1]
        finally:
            await conn.disconnect()
        create_user(open_dev)
