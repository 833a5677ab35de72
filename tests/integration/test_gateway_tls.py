"""The gateway over HTTPS: a real ``python -m dormant_gateway`` serving TLS with a certificate from a
private CA (``make_tls_files``), on a real broker and catalog. A client trusting that CA gets answers
carrying ``Strict-Transport-Security`` with the configured max-age; a client that does not trust it,
and plain HTTP to the TLS port, get no answer. In process: the HSTS header only on HTTPS and only when
the gateway serves TLS with a max-age above 0, and TLS 1.2 as the lowest version. Settings that could
not work (a key without a certificate, unreadable or mismatched files, HSTS without HTTPS, an HSTS value
that is not a number) stop the process at start with a message naming the setting."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn
from starlette.types import Message, Receive, Scope, Send

from dormant_gateway.app import create_app
from dormant_gateway.auth import Role, load_or_create_dev_key, mint_token
from dormant_gateway.config import DEFAULT_AUDIENCE, DEFAULT_HSTS_MAX_AGE_S, DEV_ISSUER, GatewayConfig
from dormant_gateway.hsts import StrictTransportSecurity
from dormant_gateway.main import tls_context
from dormant_local import ExternalPostgres, LocalPostgres, MosquittoProcess, free_port
from dormant_local.broker_security import TlsFiles, make_tls_files

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")
TLS_ENV = ("DORMANT_GATEWAY_TLS_CERT", "DORMANT_GATEWAY_TLS_KEY", "DORMANT_GATEWAY_HSTS_MAX_AGE")
START_TIMEOUT_S = 60.0


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in TLS_ENV}
    roots = [str(ROOT / root) for root in SOURCE_ROOTS]
    env["PYTHONPATH"] = os.pathsep.join([*roots, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def trusting(tls: TlsFiles) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(tls.ca_cert))


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def no_tls_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TLS_ENV:
        monkeypatch.delenv(name, raising=False)


# --- the real gateway over HTTPS ---------------------------------------------------------------------


@dataclass
class HttpsGateway:
    port: int
    proc: subprocess.Popen[bytes]
    log_file: Path
    state_dir: Path

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-5000:]


@pytest_asyncio.fixture(scope="module")
async def tls_catalog(pg: LocalPostgres | ExternalPostgres) -> AsyncIterator[str]:
    name = f"dormant_tls_{uuid.uuid4().hex[:12]}"
    url = await pg.create_database(name, exist_ok=False)
    try:
        yield url
    finally:
        await pg.drop_database(name)


@pytest_asyncio.fixture(scope="module")
async def https_gateway(
    broker: MosquittoProcess, tls_catalog: str, tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[HttpsGateway]:
    tmp = tmp_path_factory.mktemp("https-gateway")
    port = free_port()
    env = child_env(
        DORMANT_BROKER_URL=broker.url,
        DORMANT_CATALOG_URL=tls_catalog,
        DORMANT_LAYER_STORE=str(tmp / "layers"),
        DORMANT_GATEWAY_HSTS_MAX_AGE="600",
    )
    gateway = _spawn(tmp, port, tls, env)
    try:
        await _wait_healthy(gateway, tls)
        yield gateway
    finally:
        _stop(gateway.proc)


def _spawn(tmp: Path, port: int, tls: TlsFiles, env: dict[str, str]) -> HttpsGateway:
    log_file = tmp / "gateway.log"
    with log_file.open("wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "dormant_gateway", "--port", str(port), "--no-workers"),
                *("--state-dir", str(tmp / "state")),
                *("--tls-cert", str(tls.server_cert), "--tls-key", str(tls.server_key)),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return HttpsGateway(port, proc, log_file, tmp / "state")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _wait_healthy(gateway: HttpsGateway, tls: TlsFiles) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + START_TIMEOUT_S
    async with httpx.AsyncClient(verify=trusting(tls)) as http:
        while loop.time() < end:
            if gateway.proc.poll() is not None:
                raise AssertionError(f"gateway exited ({gateway.proc.returncode}):\n{gateway.log()}")
            try:
                if (await http.get(f"{gateway.url}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"gateway not up over HTTPS after {START_TIMEOUT_S}s:\n{gateway.log()}")


async def test_https_answers_carry_the_configured_hsts(https_gateway: HttpsGateway, tls: TlsFiles) -> None:
    assert f"dormant gateway on https://127.0.0.1:{https_gateway.port}" in https_gateway.log()
    async with httpx.AsyncClient(verify=trusting(tls)) as http:
        health = await http.get(f"{https_gateway.url}/health")
        missing = await http.get(f"{https_gateway.url}/no-such-route")
        nul = await http.get(f"{https_gateway.url}/health%00")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert health.headers["strict-transport-security"] == "max-age=600; includeSubDomains"
    # Answers made by the exception handlers and by the NUL guard are marked too.
    assert missing.status_code == 404
    assert missing.headers["strict-transport-security"] == "max-age=600; includeSubDomains"
    assert nul.status_code == 400
    assert nul.headers["strict-transport-security"] == "max-age=600; includeSubDomains"


async def test_dev_tokens_are_verified_over_https(https_gateway: HttpsGateway, tls: TlsFiles) -> None:
    # The gateway's own dev key verifies tokens without a request to its own (HTTPS) address.
    key = load_or_create_dev_key(https_gateway.state_dir)
    token = mint_token(
        key, sub="ann", roles=[Role("viewer")], ttl_s=600, issuer=DEV_ISSUER, audience=DEFAULT_AUDIENCE
    )
    async with httpx.AsyncClient(verify=trusting(tls), base_url=https_gateway.url) as http:
        listed = await http.get("/api/v1/functions", headers={"Authorization": f"Bearer {token}"})
        forged = await http.get("/api/v1/functions", headers={"Authorization": f"Bearer {token[:-4]}AAAA"})
    assert listed.status_code == 200, listed.text
    assert forged.status_code == 401, forged.text


async def test_a_client_that_does_not_trust_the_ca_is_refused(
    https_gateway: HttpsGateway, tls: TlsFiles
) -> None:
    async with httpx.AsyncClient(verify=ssl.create_default_context()) as http:  # the system's CAs only
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(f"{https_gateway.url}/health")


async def test_plain_http_to_the_tls_port_gets_no_answer(https_gateway: HttpsGateway, tls: TlsFiles) -> None:
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.TransportError):
            await http.get(f"http://127.0.0.1:{https_gateway.port}/health")
    async with httpx.AsyncClient(verify=trusting(tls)) as http:  # and HTTPS still serves
        assert (await http.get(f"{https_gateway.url}/health")).status_code == 200


async def test_tls_1_2_is_served(https_gateway: HttpsGateway, tls: TlsFiles) -> None:
    context = trusting(tls)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    _, writer = await asyncio.open_connection("127.0.0.1", https_gateway.port, ssl=context)
    try:
        assert writer.get_extra_info("ssl_object").version() == "TLSv1.2"
    finally:
        writer.close()
        await writer.wait_closed()


# --- in process: where the header goes, the TLS context ----------------------------------------------


async def _sts(config: GatewayConfig, scheme: str) -> str | None:
    transport = httpx.ASGITransport(app=create_app(config))  # no lifespan: /health needs none
    async with httpx.AsyncClient(transport=transport, base_url=f"{scheme}://gateway") as http:
        response = await http.get("/health")
    assert response.status_code == 200
    value: str | None = response.headers.get("strict-transport-security")
    return value


@pytest.mark.usefixtures("no_tls_env")
async def test_hsts_defaults_to_a_year_over_https_and_is_never_sent_over_http(tls: TlsFiles) -> None:
    config = GatewayConfig.from_env(tls_cert=tls.server_cert, tls_key=tls.server_key)
    assert config.hsts_max_age_s == DEFAULT_HSTS_MAX_AGE_S == 31_536_000
    assert await _sts(config, "https") == "max-age=31536000; includeSubDomains"
    assert await _sts(config, "http") is None


@pytest.mark.usefixtures("no_tls_env")
async def test_no_hsts_without_tls_or_with_max_age_0(tls: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    # A gateway without TLS installs no HSTS middleware, even for a request whose scheme says https.
    assert await _sts(GatewayConfig.from_env(), "https") is None
    monkeypatch.setenv("DORMANT_GATEWAY_HSTS_MAX_AGE", "0")
    config = GatewayConfig.from_env(tls_cert=tls.server_cert, tls_key=tls.server_key)
    assert config.hsts_max_age_s == 0
    assert await _sts(config, "https") is None


async def test_the_middleware_replaces_a_header_a_handler_set() -> None:
    async def handler(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"strict-transport-security", b"max-age=5"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    app = StrictTransportSecurity(handler, max_age_s=60)
    await app({"type": "http", "scheme": "https", "method": "GET", "path": "/", "headers": []}, receive, send)
    sts = [v for k, v in sent[0]["headers"] if k == b"strict-transport-security"]
    assert sts == [b"max-age=60; includeSubDomains"]


@pytest.mark.usefixtures("no_tls_env")
def test_a_certificate_file_that_holds_its_key_needs_no_key_file_and_tls_1_2_is_the_minimum(
    tls: TlsFiles, tmp_path: Path
) -> None:
    combined = tmp_path / "server.pem"
    combined.write_bytes(tls.server_cert.read_bytes() + tls.server_key.read_bytes())
    combined.chmod(0o600)
    config = GatewayConfig.from_env(tls_cert=combined)
    assert config.tls and config.tls_key is None
    # What main.run gives uvicorn: the context it builds from these files.
    server = uvicorn.Config(
        create_app(config), ssl_certfile=config.tls_cert, ssl_context_factory=tls_context, loop="asyncio"
    )
    server.load()
    assert server.ssl is not None
    assert server.ssl.minimum_version == ssl.TLSVersion.TLSv1_2
    # Also when the defaults (Python build, OpenSSL configuration) would allow less.
    lowered = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lowered.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    assert tls_context(server, lambda: lowered).minimum_version == ssl.TLSVersion.TLSv1_2


# --- settings refused at start -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("other-tls"))


def _start(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dormant_gateway", "--port", str(free_port()), "--no-workers", *args],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("key without cert", ["--tls-key (DORMANT_GATEWAY_TLS_KEY)", "without --tls-cert"]),
        ("key in env without cert", ["--tls-key (DORMANT_GATEWAY_TLS_KEY)", "without --tls-cert"]),
        ("hsts without tls", ["DORMANT_GATEWAY_HSTS_MAX_AGE", "HSTS needs HTTPS", "--tls-cert"]),
        ("hsts not a number", ["DORMANT_GATEWAY_HSTS_MAX_AGE", "whole number", "'1y'"]),
        ("hsts negative", ["DORMANT_GATEWAY_HSTS_MAX_AGE", "whole number", "'-1'"]),
        ("unreadable cert", ["--tls-cert (DORMANT_GATEWAY_TLS_CERT)", "cannot read", "missing.pem"]),
        ("cert without its key", ["--tls-cert (DORMANT_GATEWAY_TLS_CERT)", "--tls-key"]),
        ("key of another cert", ["--tls-cert", "--tls-key", "key values mismatch"]),
    ],
)
def test_unusable_settings_stop_the_gateway_at_start(
    case: str, expected: list[str], tls: TlsFiles, other_tls: TlsFiles, tmp_path: Path
) -> None:
    cert, key = str(tls.server_cert), str(tls.server_key)
    args, env = {
        "key without cert": (["--tls-key", key], {}),
        "key in env without cert": ([], {"DORMANT_GATEWAY_TLS_KEY": key}),
        "hsts without tls": ([], {"DORMANT_GATEWAY_HSTS_MAX_AGE": "600"}),
        "hsts not a number": (["--tls-cert", cert, "--tls-key", key], {"DORMANT_GATEWAY_HSTS_MAX_AGE": "1y"}),
        "hsts negative": (["--tls-cert", cert, "--tls-key", key], {"DORMANT_GATEWAY_HSTS_MAX_AGE": "-1"}),
        "unreadable cert": (["--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", key], {}),
        "cert without its key": (["--tls-cert", cert], {}),
        "key of another cert": (["--tls-cert", cert, "--tls-key", str(other_tls.server_key)], {}),
    }[case]
    result = _start(args, **env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("dormant gateway: error: "), result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert "PRIVATE KEY" not in result.stderr and "dormant gateway on" not in result.stderr
