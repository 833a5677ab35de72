"""``dormant secret`` on a real OpenBao (``bao server -dev``) and catalog: ``setup`` prepares the store
and writes a pod token file only its owner reads; ``set`` reads the value from stdin, ``list`` shows
names, versions and fields but never a value, ``delete`` removes every version; a function's own
secrets are audited by name in the catalog; bad input is refused without echoing it."""

from __future__ import annotations

import asyncio
import io
import json
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dormant_catalog import open_catalog
from dormant_cli import main
from dormant_cli.build_cmds import publish
from dormant_local.openbao import OpenBaoServer

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from e2e.mesh import PROBE  # noqa: E402

SERVICE = "probe-service"
VALUE = "s3cr3t-value-7f1c"


@pytest_asyncio.fixture
async def bao(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[OpenBaoServer]:
    server = OpenBaoServer(tmp_path / "openbao")
    await server.start()
    monkeypatch.setenv("DORMANT_VAULT_ADDR", server.addr)
    monkeypatch.setenv("DORMANT_VAULT_TOKEN", server.root_token)
    try:
        yield server
    finally:
        await server.stop()


def run(monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["secret", *args])


async def test_secret_setup_set_list_delete(
    bao: OpenBaoServer,
    catalog_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await publish(PROBE, catalog_url, tmp_path / "layers", actor="test", import_check=False)
    token_file = tmp_path / "pod" / "sidecar-token"

    def cli(*args: str, stdin: str = "") -> int:
        return run(monkeypatch, *args, stdin=stdin)

    assert await asyncio.to_thread(cli, "setup", "--sidecar-token-file", str(token_file)) == 0
    assert "secrets store ready" in capsys.readouterr().out
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token_file.read_text()) > 10

    # A shared secret, set twice: two versions.
    assert await asyncio.to_thread(cli, "set", "api-token", stdin=VALUE + "\n") == 0
    assert "api-token (shared): version 1" in capsys.readouterr().out
    assert await asyncio.to_thread(cli, "set", "api-token", "--json", stdin=VALUE + "-2") == 0
    out = capsys.readouterr().out
    assert json.loads(out)["version"] == 2 and VALUE not in out
    # A function's own secret, with fields; audited by name in the catalog.
    fields = json.dumps({"user": "app", "password": VALUE})
    own = ["--service", SERVICE, "--catalog-url", catalog_url]
    assert await asyncio.to_thread(cli, "set", "db", "--fields", *own, stdin=fields) == 0
    capsys.readouterr()

    assert await asyncio.to_thread(cli, "list", "--json") == 0
    shared = json.loads(capsys.readouterr().out)
    assert {"name": "api-token", "version": 2, "fields": ["value"]} in shared["secrets"]
    assert await asyncio.to_thread(cli, "list", "--service", SERVICE, "--json") == 0
    listed = capsys.readouterr().out
    assert json.loads(listed)["secrets"] == [{"name": "db", "version": 1, "fields": ["password", "user"]}]
    assert VALUE not in listed

    # Refused without echoing the input: not JSON with --fields, nothing on stdin, a bad name.
    assert await asyncio.to_thread(cli, "set", "db2", "--fields", stdin=VALUE) != 0
    assert await asyncio.to_thread(cli, "set", "empty", stdin="") != 0
    assert await asyncio.to_thread(cli, "set", "../escape", stdin=VALUE) != 0
    refused = capsys.readouterr()
    assert VALUE not in refused.out + refused.err and "not a JSON object" in refused.err

    assert await asyncio.to_thread(cli, "delete", "db", *own) == 0
    assert await asyncio.to_thread(cli, "delete", "db", *own) != 0  # gone: every version
    assert "no secret 'db'" in capsys.readouterr().err
    assert await asyncio.to_thread(cli, "list", "--service", SERVICE, "--json") == 0
    assert json.loads(capsys.readouterr().out)["secrets"] == []

    async with await open_catalog(catalog_url) as catalog:
        audit = await catalog.list_audit(SERVICE, limit=10)
    actions = [(a.action, a.detail) for a in audit if a.action in ("set-secrets", "delete-secret")]
    assert sorted(actions, key=lambda a: a[0]) == [
        ("delete-secret", {"names": ["db"]}),
        ("set-secrets", {"names": ["db"]}),
    ]
    assert VALUE not in json.dumps([a.detail for a in audit])
