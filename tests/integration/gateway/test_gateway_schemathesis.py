"""schemathesis against ``/openapi.json`` with an admin token: no server error, no response that breaks
the schema, no undocumented status code. The invoke operations are left out here (they call functions;
their status codes are tested in test_gateway_invoke.py)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from gw_helpers import GatewayProcess

from dormant_local import ExternalPostgres, LocalPostgres, MosquittoProcess


@pytest_asyncio.fixture(scope="module")
async def bare_gateway(
    broker: MosquittoProcess, pg: LocalPostgres | ExternalPostgres, gw_tmp: Path
) -> AsyncIterator[GatewayProcess]:
    name = "dormant_gw_schemathesis"
    url = await pg.create_database(name, exist_ok=True)
    process = GatewayProcess(
        broker_url=broker.url,
        catalog_url=url,
        layer_store=gw_tmp / "st-layers",
        state_dir=gw_tmp / "st-state",
        log_file=gw_tmp / "st-gateway.log",
        extra_env={"DORMANT_RATE_MANAGE_PER_MIN": "1000000", "DORMANT_RATE_DEPLOY_PER_MIN": "1000000"},
    )
    try:
        await process.start()
        yield process
    finally:
        process.stop()
        await pg.drop_database(name)


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    bare_gateway: GatewayProcess,
) -> None:
    token = bare_gateway.token("admin", sub="schemathesis")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",  # a log stream (?follow=true) never ends: the generated calls do not follow
        str(Path(__file__).with_name("schemathesis.toml")),
        "run",
        f"{bare_gateway.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        "--exclude-path-regex",
        "invoke",
        "--max-examples",
        "15",
        "--seed",
        "20251123",
        "--no-shrink",
        "--request-timeout",
        "20",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-8000:] + "\n--- gateway log\n" + bare_gateway.log()
