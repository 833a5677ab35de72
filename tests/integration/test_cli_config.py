"""``dormant config`` on a real catalog and broker: values are typed from the command line, merged,
shown and removed; the rollout controller publishes each revision retained on ``mesh/config/{svc}``
(what runtimes read) and ``set`` returns once it has; without a controller the change is stored and
the command says it is not published yet; what cannot be carried is refused and nothing is written;
the audit log names the values changed, never the values."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from dormant import wire
from dormant.transport import new_transport
from dormant_catalog import open_catalog
from dormant_cli import main
from dormant_cli.build_cmds import publish
from dormant_cli.config_cmd import parse_values
from dormant_controller.process import Controller
from dormant_local.broker import MosquittoProcess

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from e2e.mesh import PROBE  # noqa: E402

SERVICE = "probe-service"


def test_values_are_json_where_they_parse_and_strings_otherwise() -> None:
    assert parse_values(["on=true", "n=10", 'tags=["a"]', "greeting=hello", 'mode="true"', "q=a=b"]) == {
        "on": True,
        "n": 10,
        "tags": ["a"],
        "greeting": "hello",
        "mode": "true",
        "q": "a=b",
    }


@contextlib.asynccontextmanager
async def controller(catalog_url: str, broker_url: str) -> AsyncIterator[Controller]:
    process = Controller(catalog_url, broker_url, tick_s=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(process.run(stop))
    try:
        await asyncio.wait_for(process.active.wait(), 60)
        yield process
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def retained(broker_url: str, service: str) -> dict[str, Any]:
    """The retained ``mesh/config/{svc}`` message, as a starting runtime receives it."""
    transport = new_transport(broker_url, client_id="test-config-reader")
    await transport.connect()
    try:
        await transport.subscribe([wire.config_topic(service)], qos=1)
        async with asyncio.timeout(10):
            async for message in transport.messages():
                body: dict[str, Any] = orjson.loads(message.payload)
                return body
    finally:
        await transport.close()
    raise AssertionError("no retained configuration")


async def test_config_set_get_unset_through_the_controller(
    catalog_url: str, broker: MosquittoProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await publish(PROBE, catalog_url, tmp_path / "layers", actor="test", import_check=False)

    async def dormant(*args: str) -> int:
        return await asyncio.to_thread(main, ["config", *args, "--catalog-url", catalog_url])

    # No controller yet: stored, not published, and the command says so.
    assert await dormant("set", SERVICE, "signups_open=true", "--wait", "0.2", "--actor", "ops:ann") == 0
    assert "not published it yet" in capsys.readouterr().out

    async with controller(catalog_url, broker.url):
        assert await dormant("set", SERVICE, "limit=10", "greeting=hi", "--json") == 0
        result = json.loads(capsys.readouterr().out)
        assert result["delivered"] is True and result["changed"] is True
        assert result["values"] == {"signups_open": True, "limit": 10, "greeting": "hi"}
        assert await retained(broker.url, SERVICE) == {
            "revision": result["revision"],
            "values": result["values"],
        }

        assert await dormant("unset", SERVICE, "greeting", "--json") == 0
        unset = json.loads(capsys.readouterr().out)
        assert unset["revision"] == result["revision"] + 1 and "greeting" not in unset["values"]
        assert (await retained(broker.url, SERVICE))["values"] == {"signups_open": True, "limit": 10}

        # The same values again: no new revision.
        assert await dormant("set", SERVICE, "limit=10", "--json") == 0
        assert json.loads(capsys.readouterr().out)["changed"] is False

    assert (
        await asyncio.to_thread(main, ["config", "get", SERVICE, "--json", "--catalog-url", catalog_url]) == 0
    )
    got = json.loads(capsys.readouterr().out)
    assert got == {
        "service": SERVICE,
        "revision": unset["revision"],
        "values": unset["values"],
        "published": True,
    }

    # Refused, and nothing written: a secret reference, a bad name, an unknown service.
    assert await dormant("set", SERVICE, "db=${SECRET:db-password}") != 0
    assert "holds no secrets" in capsys.readouterr().err
    assert await dormant("set", SERVICE, "bad name=1") != 0
    assert await dormant("set", "no-such-service", "a=1") != 0
    capsys.readouterr()
    async with await open_catalog(catalog_url) as catalog:
        async with catalog.db.transaction() as conn:
            cur = await conn.execute(
                "SELECT detail FROM audit_log WHERE app_name = %s AND action = 'set-config' ORDER BY id",
                (SERVICE,),
            )
            details = [row[0] for row in await cur.fetchall()]
    assert [d["revision"] for d in details] == [1, 2, 3]
    assert details[0]["changed"] == ["signups_open"] and details[2]["removed"] == ["greeting"]
    assert "hi" not in json.dumps(details)  # names, never values
