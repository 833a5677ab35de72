"""``dormant env`` on a real catalog: variables are set, merged, listed and unset; every change is a new
generation of the service's slots (what makes pods reload with it); what cannot take effect is refused
and nothing is written; the audit log names the variables, never their values."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from dormant_catalog import open_catalog
from dormant_cli import main
from dormant_cli.build_cmds import publish
from dormant_cli.deploy_cmd import deploy

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from e2e.mesh import PROBE  # noqa: E402

SERVICE = "probe-service"


async def _generations(catalog_url: str) -> list[int]:
    async with await open_catalog(catalog_url) as catalog:
        return [slot.generation for slot in await catalog.list_slots(SERVICE)]


async def test_env_set_list_unset_roll_the_slots(
    catalog_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The catalog only: no broker, no pods (what `dormant env` changes is the catalog's record).
    _, version = await publish(PROBE, catalog_url, tmp_path / "layers", actor="test", import_check=False)
    await deploy(catalog_url, SERVICE, version, 2)
    before = await _generations(catalog_url)

    async def dormant(*args: str) -> int:
        return await asyncio.to_thread(main, ["env", *args, "--catalog-url", catalog_url])

    assert await dormant("set", SERVICE, "GREETING=hello", "QUERY=a=b", "--actor", "ops:ann") == 0
    assert "every replica reloads" in capsys.readouterr().out
    after_set = await _generations(catalog_url)
    assert [g - b for g, b in zip(after_set, before, strict=True)] == [1, 1]

    assert await dormant("set", SERVICE, "LEVEL=debug", "--json") == 0
    assert json.loads(capsys.readouterr().out)["variables"] == {
        "GREETING": "hello",
        "QUERY": "a=b",  # everything after the first '=' is the value
        "LEVEL": "debug",
    }
    assert await dormant("list", SERVICE, "--json") == 0
    assert json.loads(capsys.readouterr().out)["variables"]["QUERY"] == "a=b"

    # Setting what is already there changes nothing and reloads nobody.
    rolled = await _generations(catalog_url)
    assert await dormant("set", SERVICE, "LEVEL=debug") == 0
    assert "unchanged" in capsys.readouterr().out
    assert await _generations(catalog_url) == rolled

    # Refused, and nothing written: a reserved name, a bad word.
    assert await dormant("set", SERVICE, "PYTHONPATH=/x", "A=1") == 1
    assert "PYTHONPATH is reserved" in capsys.readouterr().err
    assert await dormant("set", SERVICE, "no-equals-sign") == 1
    assert "is not KEY=VALUE" in capsys.readouterr().err
    assert await dormant("set", "no-such-service", "A=1") == 1
    assert "no service 'no-such-service'" in capsys.readouterr().err
    assert await _generations(catalog_url) == rolled

    assert await dormant("unset", SERVICE, "GREETING", "QUERY", "--json") == 0
    assert json.loads(capsys.readouterr().out)["variables"] == {"LEVEL": "debug"}
    assert [g - r for g, r in zip(await _generations(catalog_url), rolled, strict=True)] == [1, 1]

    async with await open_catalog(catalog_url) as catalog:
        records = [r for r in await catalog.list_audit(SERVICE) if r.action == "update-function"]
    assert records and all("hello" not in json.dumps(r.detail) for r in records)
    assert records[0].actor == "ops:ann"
    assert any(r.detail.get("environmentNames") == ["GREETING", "LEVEL", "QUERY"] for r in records)
