"""Secrets in a real OpenBao (issue 12, item 2): a function's environment references them as
``${SECRET:name}``, a rotation reaches the handler within the TTL without a redeploy, a function's
token cannot read another function's secrets, and no value shows in a log, the catalog or an answer.

Real parts: a ``bao server -dev`` (``dormant_local.OpenBaoServer``), the session's Postgres and
Mosquitto, a pod (``dormant pod``) with the OpenBao address and its restricted token, a controller and
a gateway with the admin token; ``dormant secret set`` runs as a subprocess reading stdin.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import hvac
import hvac.exceptions
import psycopg
import pytest
import pytest_asyncio
from gw_helpers import PROBE, GatewayProcess, child_env, new_gateway

from dormant import Client
from dormant_local import ExternalPostgres, LocalPostgres, MosquittoProcess
from dormant_local.openbao import OpenBaoServer
from dormant_secrets.openbao import OpenBaoAdmin, TokenMinter

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from e2e.mesh import Mesh, caller_token

API = "/api/v1"
SERVICE = "probe-service"
TTL_S = "1"
RUN = uuid.uuid4().hex[:10]
OWN_V1 = f"own-v1-{RUN}"
OWN_V2 = f"own-v2-{RUN}"
DB_USER = f"user-{RUN}"
SHARED_V1 = f"shared-v1-{RUN}"
SHARED_V2 = f"shared-v2-{RUN}"
OTHER = f"other-fn-{RUN}"
VALUES = (OWN_V1, OWN_V2, DB_USER, SHARED_V1, SHARED_V2, OTHER)


class Secrets:
    def __init__(self, bao: OpenBaoServer, sidecar_token: str, mesh: Mesh, gateway: GatewayProcess):
        self.bao, self.sidecar_token, self.mesh, self.gateway = bao, sidecar_token, mesh, gateway
        self.answers: list[str] = []
        """Every API answer the test got, to check no value is in one."""


@pytest_asyncio.fixture(scope="module")
async def secrets_mesh(
    pg: LocalPostgres | ExternalPostgres, broker: MosquittoProcess, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Secrets]:
    tmp = tmp_path_factory.mktemp("secrets")
    name = f"dormant_secrets_{uuid.uuid4().hex[:12]}"
    catalog_url = await pg.create_database(name, exist_ok=False)
    bao = OpenBaoServer(tmp / "openbao")
    await bao.start()
    mesh = Mesh(broker.url, catalog_url, tmp / "layers", tmp / "pods")
    mesh.work_root.mkdir(parents=True, exist_ok=True)
    token = caller_token(mesh.identity.token("tester"))
    token.__enter__()
    gateway: GatewayProcess | None = None
    try:
        admin = OpenBaoAdmin(bao.addr, bao.root_token)
        admin.setup()
        sidecar_token = admin.create_sidecar_token()
        admin.close()
        service, version = await mesh.publish(PROBE)
        await mesh.deploy(service, version, replicas=1)
        mesh.start_pod(
            "secrets-pod",
            extra_env={
                "DORMANT_VAULT_ADDR": bao.addr,
                "DORMANT_VAULT_SIDECAR_TOKEN": sidecar_token,
                "DORMANT_SECRETS_TTL_S": TTL_S,
            },
        )
        mesh.start_controller()
        gateway = new_gateway(
            mesh, tmp, "secrets-gw", DORMANT_VAULT_ADDR=bao.addr, DORMANT_VAULT_TOKEN=bao.root_token
        )
        await gateway.start()
        await mesh.wait_serving(SERVICE, timeout=60)
        yield Secrets(bao, sidecar_token, mesh, gateway)
    finally:
        if gateway is not None:
            gateway.stop()
        mesh.stop()
        token.__exit__(None, None, None)
        await bao.stop()
        await pg.drop_database(name)


def _cli_secret_set(bao: OpenBaoServer, name: str, value: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dormant_cli", "secret", "set", name],
        input=value + "\n",
        env=child_env(DORMANT_VAULT_ADDR=bao.addr, DORMANT_VAULT_TOKEN=bao.root_token),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def _env(client: Client, name: str) -> dict[str, Any]:
    answer: dict[str, Any] = await client.call(SERVICE, "env", {"name": name}, timeout=10)
    return answer


async def _until(client: Client, name: str, value: str, *, within_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        answer = await _env(client, name)
        if answer.get("value") == value:
            return answer
        assert time.monotonic() < deadline, f"{name} did not become the expected value in {within_s}s"
        await asyncio.sleep(0.1)


async def _dump_catalog(catalog_url: str) -> str:
    """Every row of every table of the test database, as text."""
    parts: list[str] = []
    async with await psycopg.AsyncConnection.connect(catalog_url) as conn:
        cur = await conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
            " WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        tables = await cur.fetchall()
        assert len(tables) > 5
        for schema, table in tables:
            rows = await conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t')
            parts.extend(str(row[0]) for row in await rows.fetchall())
    return "\n".join(parts)


async def test_a_rotated_secret_reaches_the_handler_within_the_ttl_and_no_value_leaks(
    secrets_mesh: Secrets,
) -> None:
    s = secrets_mesh
    headers = s.gateway.headers("admin")
    # A shared secret through the CLI: the value on stdin, never on the command line.
    done = _cli_secret_set(s.bao, "greeting", SHARED_V1)
    assert done.returncode == 0, done.stderr
    assert SHARED_V1 not in done.stdout + done.stderr
    # Another function's secret, which probe-service must not be able to read.
    other_admin = OpenBaoAdmin(s.bao.addr, s.bao.root_token)
    other_admin.set_secret("user-service", "db", OTHER)
    other_admin.close()

    async with (
        httpx.AsyncClient(base_url=s.gateway.url, headers=headers, timeout=30) as http,
        Client(s.gateway.broker_url) as client,
    ):
        put = await http.put(
            f"{API}/functions/{SERVICE}/secrets", json={"secrets": {"db": {"value": OWN_V1, "user": DB_USER}}}
        )
        s.answers.append(put.text)
        assert put.status_code == 200, put.text
        assert put.json() == {"function": SERVICE, "secrets": [{"name": "db", "version": 1}]}
        env = {"DB_PASS": "${SECRET:db}", "DB_USER": "u=${SECRET:db#user}", "GREETING": "${SECRET:greeting}"}
        put = await http.put(f"{API}/functions/{SERVICE}/environment", json={"variables": env})
        s.answers.append(put.text)
        assert put.status_code == 200, put.text

        first = await _until(client, "DB_PASS", OWN_V1, within_s=60)
        assert (await _env(client, "DB_USER"))["value"] == f"u={DB_USER}"
        assert (await _env(client, "GREETING"))["value"] == SHARED_V1

        # Rotate the function's secret through the API and the shared one through the CLI.
        put = await http.put(f"{API}/functions/{SERVICE}/secrets", json={"secrets": {"db": OWN_V2}})
        s.answers.append(put.text)
        assert put.status_code == 200 and put.json()["secrets"] == [{"name": "db", "version": 2}]
        rotated_at = time.monotonic()
        second = await _until(client, "DB_PASS", OWN_V2, within_s=30)
        seen_after = time.monotonic() - rotated_at
        assert second["pid"] == first["pid"]  # no redeploy: the same runtime process
        done = _cli_secret_set(s.bao, "greeting", SHARED_V2)
        assert done.returncode == 0, done.stderr
        third = await _until(client, "GREETING", SHARED_V2, within_s=30)
        assert third["pid"] == first["pid"]
        # TTL 1 s: seen within a few TTLs (generous for a busy machine, but far below a redeploy's).
        assert seen_after < 15, seen_after

        listed = await http.get(f"{API}/functions/{SERVICE}/secrets")
        s.answers.append(listed.text)
        assert listed.json()["secrets"] == [{"name": "db", "version": 2, "fields": ["value"]}]
        for path in (f"{API}/functions/{SERVICE}", f"{API}/functions"):
            got = await http.get(path)
            s.answers.append(got.text)
        # A malformed reference is refused by the environment rules, without echoing anything else.
        bad = await http.put(
            f"{API}/functions/{SERVICE}/environment", json={"variables": {"X": "${SECRET:a/b}"}}
        )
        s.answers.append(bad.text)
        assert bad.status_code == 400, bad.text

    # The function's token (minted as the pod mints it) reads its own secrets and the shared names its
    # environment references; OpenBao refuses another function's secret and an unreferenced shared one.
    minted = await TokenMinter(s.bao.addr, s.sidecar_token).mint(SERVICE)

    def read(token: str, path: str) -> dict[str, str]:
        answer = hvac.Client(url=s.bao.addr, token=token).secrets.kv.v2.read_secret_version(
            path=path, mount_point="secret", raise_on_deleted_version=True
        )
        return dict(answer["data"]["data"])

    assert read(minted, f"dormant/functions/{SERVICE}/db")["value"] == OWN_V2
    assert read(minted, "dormant/shared/greeting")["value"] == SHARED_V2
    with pytest.raises(hvac.exceptions.Forbidden):
        read(minted, "dormant/functions/user-service/db")
    with pytest.raises(hvac.exceptions.Forbidden):
        read(minted, "dormant/shared/not-referenced")
    with pytest.raises(hvac.exceptions.Forbidden):  # the pod's own token mints, but reads nothing
        read(s.sidecar_token, f"dormant/functions/{SERVICE}/db")

    # No value anywhere: pod and runtime logs, controller and gateway logs, catalog rows, API answers.
    logs = "\n".join(path.read_text(errors="replace") for path in s.mesh.work_root.glob("*.log"))
    logs += (s.gateway.log_file).read_text(errors="replace")
    assert "secrets of probe-service resolved" in logs  # the runtime's log is in the pod's
    catalog = await _dump_catalog(s.mesh.catalog_url)
    async with await psycopg.AsyncConnection.connect(s.mesh.catalog_url) as conn:
        cur = await conn.execute("SELECT detail FROM audit_log WHERE action = 'set-secrets' ORDER BY id")
        assert [row[0] for row in await cur.fetchall()] == [{"names": ["db"]}, {"names": ["db"]}]
    for value in VALUES:
        assert value not in logs, "a secret value is in a log"
        assert value not in catalog, "a secret value is in the catalog"
        assert all(value not in answer for answer in s.answers), "a secret value is in an API answer"


async def test_an_unresolvable_reference_fails_the_load_naming_it(secrets_mesh: Secrets) -> None:
    s = secrets_mesh
    async with httpx.AsyncClient(
        base_url=s.gateway.url, headers=s.gateway.headers("admin"), timeout=30
    ) as http:
        put = await http.put(
            f"{API}/functions/{SERVICE}/environment", json={"variables": {"X": "${SECRET:missing-one}"}}
        )
        assert put.status_code == 200, put.text
        deadline = time.monotonic() + 60
        while "cannot resolve ${SECRET:missing-one}" not in s.mesh.pod_log("secrets-pod"):
            assert time.monotonic() < deadline, s.mesh.pod_log("secrets-pod")[-3000:]
            await asyncio.sleep(0.2)
        status = await http.get(f"{API}/functions/{SERVICE}")
        assert status.status_code == 200
