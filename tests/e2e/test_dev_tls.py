"""``dormant dev --tls``: the whole mesh over TLS with a CA of its own (issue 11's transport security).

One ``dormant dev --tls`` serves every test here. The developer's calls reach the service (so the
runtimes, the gateway and the controller, all on the components' listener, connected with their client
certificates); nothing speaks plain MQTT or plain HTTP; the components' listener refuses a client
without a certificate the mesh CA signed, even with a valid login; ``mosquitto_rr`` works with the CA
file ``env.sh`` names, and not without it; the gateway answers HTTPS with HSTS.
"""

from __future__ import annotations

import json
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dormant.config import parse_broker_url
from dormant.mqtt import MqttError, connect

from .dev_mesh import DevMesh, dormant, run_rr, running_dev

pytestmark = pytest.mark.slow

SERVICE = "user-service"


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevMesh]:
    with running_dev(tmp_path_factory.mktemp("dev-tls"), "--tls") as mesh:
        yield mesh


def ca_file(dev: DevMesh) -> Path:
    return Path(dev.env_sh["DORMANT_BROKER_CA_FILE"])


def test_every_url_is_tls_and_names_the_mesh_ca(dev: DevMesh) -> None:
    ca = ca_file(dev)
    assert ca.is_file() and ca.parent == dev.state / "mosquitto" / "tls"
    assert dev.mesh["caFile"] == str(ca)
    for key in ("brokerUrl", "adminBrokerUrl"):
        address = parse_broker_url(dev.mesh[key], environ={})
        assert address.tls and address.ca_file == str(ca), key
    # The developer is a caller: a password, no client certificate. The admin is a component.
    assert parse_broker_url(dev.mesh["brokerUrl"], environ={}).cert_file is None
    admin = parse_broker_url(dev.mesh["adminBrokerUrl"], environ={})
    assert admin.cert_file is not None and Path(admin.cert_file).is_file()
    assert dev.env_sh["DORMANT_BROKER_URL"] == dev.mesh["brokerUrl"]
    assert dev.mesh["gatewayUrl"].startswith("https://127.0.0.1:")
    config = (dev.state / "mosquitto" / "mosquitto.conf").read_text()
    assert config.count("tls_version tlsv1.2") == 2  # both listeners
    assert config.count("require_certificate true") == 1  # the components' listener


def test_a_call_over_tls_reaches_the_service(dev: DevMesh) -> None:
    email = f"tls-{uuid.uuid4().hex[:8]}@example.com"
    done = dormant(dev, "call", f"{SERVICE}.createUser", json.dumps({"email": email, "name": "Tls"}))
    assert done.returncode == 0, done.stderr
    user_id = json.loads(done.stdout)["userId"]
    done = dormant(dev, "call", f"{SERVICE}.getUser", json.dumps({"userId": user_id}))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["email"] == email


async def test_plain_mqtt_is_not_spoken(dev: DevMesh) -> None:
    developer = parse_broker_url(dev.mesh["brokerUrl"], environ={})
    for port in (developer.port, dev.components_port):
        with pytest.raises((MqttError, OSError)):
            conn = await connect(
                developer.host,
                port,
                client_id=f"t-{uuid.uuid4().hex[:8]}",
                username=developer.username,
                password=developer.password,
                timeout=10,
            )
            await conn.disconnect()


def _context(ca: Path, *, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


async def test_the_components_listener_wants_a_certificate_from_the_mesh_ca(dev: DevMesh) -> None:
    admin = parse_broker_url(dev.mesh["adminBrokerUrl"], environ={})
    assert admin.cert_file is not None

    async def login(context: ssl.SSLContext) -> None:
        conn = await connect(
            admin.host,
            admin.port,
            client_id=f"dormant-t-{uuid.uuid4().hex[:8]}",
            username=admin.username,
            password=admin.password,
            tls=context,
            timeout=10,
        )
        await conn.disconnect()

    await login(_context(ca_file(dev), cert=admin.cert_file, key=admin.key_file))  # its certificate: in
    # The right login, but no certificate: the handshake fails (TLS 1.3 reports it on the first read).
    with pytest.raises((MqttError, OSError)):
        await login(_context(ca_file(dev)))


def test_mosquitto_rr_needs_the_ca_file(dev: DevMesh) -> None:
    login = ("-u", dev.user, "-P", dev.password)
    answered = run_rr(dev, "--cafile", str(ca_file(dev)), *login)
    assert answered.returncode == 0, answered.stderr
    assert "userId" in json.loads(answered.stdout)
    refused = run_rr(dev, *login)  # plain MQTT to a TLS listener
    assert refused.returncode != 0 and "userId" not in refused.stdout


def test_the_gateway_serves_https_with_hsts(dev: DevMesh) -> None:
    url = dev.mesh["gatewayUrl"] + "/health"
    response = httpx.get(url, verify=_context(ca_file(dev)), timeout=10)
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")
    with pytest.raises(httpx.ConnectError):  # the system's trust store does not know the mesh CA
        httpx.get(url, timeout=10)
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on that port
        httpx.get(url.replace("https://", "http://"), timeout=10)
