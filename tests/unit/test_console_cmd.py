"""``dormant console``: which gateway it names, the URL it prints (the token in the fragment only), and
the token it signs with the gateway's dev key when no dev mesh runs (a viewer's, by default)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from dormant_cli import main
from dormant_cli.common import CommandError
from dormant_cli.console_cmd import console_url, gateway_url
from dormant_gateway.auth import load_or_create_dev_key


def test_the_flag_wins_then_the_state_dir_then_the_environment_then_the_dev_mesh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / ".dormant" / "dev").mkdir(parents=True)
    (project / ".dormant" / "dev" / "mesh.json").write_text(json.dumps({"gatewayUrl": "http://dev:1"}))
    other = tmp_path / "other-state"
    other.mkdir()
    (other / "mesh.json").write_text(json.dumps({"gatewayUrl": "http://other:2"}))
    monkeypatch.chdir(project)
    monkeypatch.delenv("DORMANT_GATEWAY_URL", raising=False)
    assert gateway_url(None, None) == "http://dev:1"
    monkeypatch.setenv("DORMANT_GATEWAY_URL", "http://env:3")
    assert gateway_url(None, None) == "http://env:3"
    assert gateway_url(None, other) == "http://other:2"
    assert gateway_url("http://flag:4", other) == "http://flag:4"
    with pytest.raises(CommandError, match="no dev mesh"):
        gateway_url(None, tmp_path / "nothing")
    monkeypatch.delenv("DORMANT_GATEWAY_URL")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CommandError, match="no gateway"):
        gateway_url(None, None)


def test_the_token_goes_in_the_fragment_only() -> None:
    url = console_url("https://gw.example.com:8443/", "a.b-c_d")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path, parts.query) == (
        "https",
        "gw.example.com:8443",
        "/console/",
        "",
    )
    assert parts.fragment == "token=a.b-c_d"


def test_without_a_dev_mesh_it_signs_a_viewer_token_with_the_dev_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    assert (
        main(["console", "--gateway-url", "http://127.0.0.1:9", "--state-dir", str(state), "--ttl", "5m"])
        == 0
    )
    url = capsys.readouterr().out.strip()
    token = urlsplit(url).fragment.removeprefix("token=")
    key = load_or_create_dev_key(state).private_key
    claims = jwt.decode(token, ECKey.import_key(key.public_key())).claims
    assert claims["sub"] == "console" and claims["roles"] == ["viewer"]
    assert claims["exp"] - claims["iat"] == 300
    assert (
        main(["console", "--gateway-url", "http://127.0.0.1:9", "--state-dir", str(state), "--role", "admin"])
        == 0
    )
    token = urlsplit(capsys.readouterr().out.strip()).fragment.removeprefix("token=")
    assert jwt.decode(token, ECKey.import_key(key.public_key())).claims["roles"] == ["admin"]
