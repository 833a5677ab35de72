"""Function logs end to end on a real mesh (pods, runtimes, broker, catalog, controller, gateway):
a handler's ``ctx.logger`` line reaches ``dormant logs -f`` with its callId (live from the broker, and
from the catalog when the broker is out of reach), ``--call`` finds it a day later but not past the
retention period (a moved clock), the API returns it and streams new ones, and one service's records
never show among another's, even when a handler prints a record that claims to be the other's."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from gw_helpers import SOURCE_ROOTS, GatewayProcess, wait_for

from dormant import Client
from dormant_catalog import open_catalog
from dormant_catalog.function_logs import LogFilter, purge_logs, query_logs

API = "/api/v1"
ARRIVAL_DEADLINE_S = 30.0
"""Generous: the goal is well under a second (the measured latency is printed), but a busy machine
must not fail the test."""


def cli_env(broker_url: str, catalog_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, SOURCE_ROOTS), env.get("PYTHONPATH", "")])
    env.update(DORMANT_BROKER_URL=broker_url, DORMANT_CATALOG_URL=catalog_url)
    return env


def dormant_logs(mesh: Any, *args: str) -> list[dict[str, Any]]:
    """``dormant logs ARGS --json``: its records."""
    done = subprocess.run(
        [sys.executable, "-m", "dormant_cli", "logs", *args, "--json"],
        env=cli_env(mesh.broker_url, mesh.catalog_url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines() if line]


@dataclass
class Follower:
    """``dormant logs SVC -f --json`` as a child process; ``records`` with the wall time each arrived."""

    proc: asyncio.subprocess.Process
    records: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            if line.strip():
                self.records.append((time.time(), orjson.loads(line)))
                self.arrived.set()

    async def wait_for(self, match: Callable[[dict[str, Any]], bool]) -> tuple[float, dict[str, Any]]:
        async with asyncio.timeout(ARRIVAL_DEADLINE_S):
            while True:
                for arrived, record in self.records:
                    if match(record):
                        return arrived, record
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def following(mesh: Any, service: str, *extra: str) -> AsyncIterator[Follower]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dormant_cli",
        "logs",
        service,
        "-f",
        "--json",
        "--limit",
        "0",
        *extra,
        env=cli_env(mesh.broker_url, mesh.catalog_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    follower = Follower(proc)
    reader = asyncio.create_task(follower.read())
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(60):  # until it says it follows (subscribed, or polling the catalog)
            while True:
                line = (await proc.stderr.readline()).decode()
                assert line, f"dormant logs -f ended: {follower.stderr}"
                follower.stderr.append(line)
                if line.startswith(f"following {service}'s logs"):
                    break
        yield follower
    finally:
        proc.terminate()
        await proc.wait()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


@pytest_asyncio.fixture(scope="module")
async def client(gw_mesh: Any) -> AsyncIterator[Client]:
    async with Client(gw_mesh.broker_url) as c:
        yield c


async def log_line(client: Client, text: str, **extra: Any) -> str:
    """Call probe-service.log (``ctx.logger.info("probe says %s", text)``); the call's callId."""
    result = await client.call("probe-service", "log", {"text": text, **extra}, timeout=30)
    call_id: str = result["callId"]
    return call_id


def latency_s(arrived: float, record: dict[str, Any]) -> float:
    logged = datetime.datetime.fromisoformat(record["timestamp"]).timestamp()
    return arrived - logged


@pytest.mark.parametrize("path", ["broker", "catalog"])
async def test_a_ctx_logger_line_reaches_logs_follow_with_its_call_id(
    gw_mesh: Any, client: Client, path: str
) -> None:
    # "catalog": the broker cannot be reached, so -f reads new records from the catalog instead.
    extra = ("--broker-url", "mqtt://127.0.0.1:1") if path == "catalog" else ()
    await log_line(client, "warm-up")  # the first call of a fresh runtime pays for its imports
    async with following(gw_mesh, "probe-service", *extra) as follower:
        text = f"hello-{uuid.uuid4().hex[:8]}"
        started = time.time()
        call_id = await log_line(client, text)
        arrived, record = await follower.wait_for(lambda r: r.get("requestId") == call_id)
    print(
        f"\nctx.logger -> dormant logs -f ({path}): {latency_s(arrived, record) * 1000:.1f} ms after the"
        f" record's timestamp, {(arrived - started) * 1000:.1f} ms after the call started"
    )
    assert record["message"] == f"probe says {text}"
    assert record["functionName"] == "probe-service" and record["version"] == "v1"
    assert record["level"] == "INFO" and record["function"] == "log"
    assert record["podId"] and record["logId"] and record["logger"] == "dormant.fn.probe-service.log"
    if path == "catalog":
        assert any("reading new records from the catalog" in line for line in follower.stderr)


async def test_one_services_records_never_show_among_anothers(
    gw_mesh: Any, client: Client, gateway: GatewayProcess
) -> None:
    marker = f"spoof-{uuid.uuid4().hex[:8]}"
    async with (
        following(gw_mesh, "probe-service") as probe_follower,
        following(gw_mesh, "user-service") as user_follower,
    ):
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
            created = await http.post(
                f"{API}/functions/user-service.createUser/invoke",
                json={"email": f"{marker}@example.com", "name": "Iso"},
            )
            assert created.status_code == 200, created.text
        user_call = created.headers["x-dormant-call-id"]
        # A handler of probe-service prints a record that claims to be user-service's.
        probe_call = await log_line(client, marker, spoof="user-service")
        await user_follower.wait_for(lambda r: r.get("requestId") == user_call)
        _, spoofed = await probe_follower.wait_for(lambda r: r.get("message") == marker)
        await probe_follower.wait_for(lambda r: r.get("requestId") == probe_call)
    assert spoofed["functionName"] == "probe-service"  # the pod's word, not the line's
    assert all(r["functionName"] == "user-service" for _, r in user_follower.records)
    assert all(r["functionName"] == "probe-service" for _, r in probe_follower.records)
    assert not any(marker in str(r.get("message")) for _, r in user_follower.records)

    stored_user = dormant_logs(gw_mesh, "user-service", "--limit", "1000")
    assert any(r.get("requestId") == user_call for r in stored_user)
    assert all(r["functionName"] == "user-service" for r in stored_user)
    assert not any(r.get("message") == marker for r in stored_user)
    stored_probe = dormant_logs(gw_mesh, "probe-service", "--limit", "1000")
    assert any(r.get("message") == marker for r in stored_probe)
    assert all(r["functionName"] == "probe-service" for r in stored_probe)
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("viewer")) as http:
        response = await http.get(f"{API}/functions/user-service/logs", params={"callId": probe_call})
        assert response.status_code == 200 and response.json()["items"] == []


async def test_the_api_returns_records_and_streams_new_ones(
    gw_mesh: Any, client: Client, gateway: GatewayProcess
) -> None:
    call_id = await log_line(client, "for the api", level="warning")
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("viewer"), timeout=60) as http:
        url = f"{API}/functions/probe-service/logs"
        async with asyncio.timeout(ARRIVAL_DEADLINE_S):
            while True:
                response = await http.get(url, params={"callId": call_id})
                assert response.status_code == 200, response.text
                if response.json()["items"]:
                    break
                await asyncio.sleep(0.1)
        [record] = response.json()["items"]
        assert record["message"] == "probe says for the api" and record["level"] == "WARNING"
        assert list(record)[:9] == [
            "timestamp",
            "level",
            "requestId",
            "functionName",
            "version",
            "message",
            "duration",
            "traceId",
            "spanId",
        ]
        assert response.json()["function"] == "probe-service"
        warnings = (await http.get(url, params={"level": "warning", "since": "1h", "version": "v1"})).json()[
            "items"
        ]
        assert call_id in [r["requestId"] for r in warnings]
        assert all(r["level"] in ("WARNING", "ERROR", "CRITICAL") for r in warnings)
        assert (await http.get(url, params={"level": "loud"})).status_code == 400
        assert (await http.get(url, params={"since": "yesterday"})).status_code == 400
        assert (await http.get(f"{API}/functions/no-such-function/logs")).status_code == 404
        assert (await http.get(url, headers={"Authorization": ""})).status_code == 401

        async with http.stream("GET", url, params={"follow": "true", "limit": "1"}) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("application/x-ndjson")
            lines = stream.aiter_lines()
            first = orjson.loads(await anext(lines))  # the newest record, before anything new
            assert first["functionName"] == "probe-service"
            started = time.time()
            new_call = await log_line(client, "streamed")
            async with asyncio.timeout(ARRIVAL_DEADLINE_S):
                async for line in lines:
                    if line and orjson.loads(line).get("requestId") == new_call:
                        break
            print(
                f"\nctx.logger -> GET .../logs?follow=true: {(time.time() - started) * 1000:.1f} ms after"
                " the call started"
            )


async def test_call_finds_a_record_a_day_later_and_not_past_the_retention(
    gw_mesh: Any, client: Client
) -> None:
    call_id = await log_line(client, "kept for a week")
    catalog = await open_catalog(gw_mesh.catalog_url, migrate=False)
    week = 7 * 86400.0
    try:
        await wait_for(
            lambda: catalog.db.run(query_logs, LogFilter("probe-service", call_id=call_id)),
            timeout=ARRIVAL_DEADLINE_S,
        )
        now = datetime.datetime.now(datetime.UTC)
        a_day_later = now + datetime.timedelta(days=1)
        # A day later: the retention sweep the controller runs leaves it, and --call finds it.
        await catalog.db.run(purge_logs, retention_s=week, now=a_day_later)
        [found] = await catalog.db.run(
            query_logs, LogFilter("probe-service", call_id=call_id), now=a_day_later
        )
        assert found.record["message"] == "probe says kept for a week"
        [listed] = dormant_logs(gw_mesh, "probe-service", "--call", call_id)
        assert listed["requestId"] == call_id and listed["message"] == "probe says kept for a week"
        # Past the retention period it is gone.
        past = now + datetime.timedelta(days=7, minutes=1)
        assert await catalog.db.run(purge_logs, retention_s=week, now=past) >= 1
        assert await catalog.db.run(query_logs, LogFilter("probe-service", call_id=call_id), now=past) == []
        assert dormant_logs(gw_mesh, "probe-service", "--call", call_id) == []
    finally:
        await catalog.close()
