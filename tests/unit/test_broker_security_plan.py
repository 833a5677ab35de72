"""The broker security plan: dynsec password format, account names, roles, and secrets kept out of sight."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from dormant_local.broker_security import (
    BrokerAccountError,
    SecurityPlan,
    hash_password,
    inbox_role,
    runtime_username,
)


def test_password_hash_matches_mosquitto_ctrl() -> None:
    # Written by `mosquitto_ctrl dynsec init d.json admin secretpw` (Mosquitto 2.0.11).
    salt = base64.b64decode("MZXFoKM39I8b+2ty")
    assert hash_password("secretpw", salt=salt) == {
        "password": "n1snSRTH1Pfqpd2UOh9Bl//7AjnwlA+YwpQXb9uJUDX1FUrKugNRPThIvqQTJJKHdw2XFUDAdk/"
        "OcTICvPAQvA==",
        "salt": "MZXFoKM39I8b+2ty",
        "iterations": 101,
    }
    assert len(base64.b64decode(hash_password("x")["salt"])) == 12


@pytest.mark.parametrize(
    "name", ["", "dormant", "Dormant-x", "dormant.runtime.svc", "a/b", "a+b", "a#", "-a", "x" * 129, "a b"]
)
def test_caller_names_that_could_collide_or_break_a_topic_are_refused(name: str) -> None:
    with pytest.raises(BrokerAccountError):
        SecurityPlan().add_caller(name)


def test_duplicates_and_bad_service_names_are_refused() -> None:
    plan = SecurityPlan.for_mesh(services=["user-service"], callers=["alice"])
    with pytest.raises(BrokerAccountError):
        plan.add_caller("alice")
    with pytest.raises(BrokerAccountError):
        plan.add_runtime("user-service")
    with pytest.raises(BrokerAccountError):
        plan.add_runtime("Bad_Name")
    with pytest.raises(BrokerAccountError):
        plan.account("nobody")


def test_dynsec_config_denies_by_default_and_binds_each_inbox() -> None:
    plan = SecurityPlan.for_mesh(services=["svc"], callers=["alice", "bob"])
    config = plan.dynsec_config()
    assert config["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    clients = {client["username"]: client for client in config["clients"]}
    roles = {role["rolename"]: role["acls"] for role in config["roles"]}
    assert clients["alice"]["clientid"] == "alice"
    assert "clientid" not in clients[runtime_username("svc")]
    assert [r["rolename"] for r in clients["alice"]["roles"]] == ["caller", inbox_role("alice")]
    assert {(a["acltype"], a["topic"]) for a in roles[inbox_role("alice")]} == {
        ("subscribePattern", "reply/alice/#"),
        ("publishClientReceive", "reply/alice/#"),
        ("publishClientSend", "reply/alice/#"),
    }
    runtime_acls = {(a["acltype"], a["topic"]) for a in roles["runtime:svc"]}
    assert ("subscribePattern", "$share/+/service/svc/#") in runtime_acls
    assert ("publishClientReceive", "service/svc/#") in runtime_acls
    assert ("publishClientSend", "mesh/stats/svc/#") in runtime_acls
    assert not any(
        topic.startswith("mesh/routes") for kind, topic in runtime_acls if kind == "publishClientSend"
    )
    assert all(acl["allow"] for acls in roles.values() for acl in acls)


def test_secrets_stay_out_of_reprs_and_the_files_are_private(tmp_path: Path) -> None:
    plan = SecurityPlan.for_mesh(services=["svc"], callers=["alice"])
    alice = plan.account("alice")
    assert alice.password not in repr(alice) and alice.password not in repr(plan)
    assert alice.url("127.0.0.1", 1883) == f"mqtt://alice:{alice.password}@127.0.0.1:1883"
    dynsec, credentials = plan.write(tmp_path)
    for path in (dynsec, credentials):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert alice.password not in dynsec.read_text()
    assert json.loads(credentials.read_text())["alice"]["password"] == alice.password
    loaded = SecurityPlan.load(credentials)
    assert {a.username: (a.kind, a.service) for a in loaded.accounts} == {
        a.username: (a.kind, a.service) for a in plan.accounts
    }


def test_mutual_tls_asks_components_only_for_a_certificate_the_mesh_ca_signed(tmp_path: Path) -> None:
    import ssl

    from cryptography import x509

    from dormant_local.broker import render_secured_config
    from dormant_local.broker_security import issue_client_certificate, make_tls_files

    files = make_tls_files(tmp_path / "tls", keep_ca_key=True)
    assert files.ca_key is not None and stat.S_IMODE(files.ca_key.stat().st_mode) == 0o600
    config = render_secured_config(
        port=1,
        component_port=2,
        data_dir=tmp_path,
        dynsec_file=tmp_path / "d.json",
        tls=files,
        mutual_tls=True,
    )
    callers, components = config.split("listener 2 127.0.0.1")
    assert "require_certificate" not in callers and f"certfile {files.server_cert}" in callers
    assert f"cafile {files.ca_cert}\nrequire_certificate true" in components
    cert_file, key_file = issue_client_certificate(files, "dormant.gateway")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert cert.subject.rfc4514_string() == "CN=dormant.gateway"
    # It loads as a client certificate, and the mesh CA verified it (the issuer's key signed it).
    ssl.create_default_context(ssl.Purpose.SERVER_AUTH).load_cert_chain(cert_file, key_file)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    # A CA made without keeping its key signs nothing more.
    with pytest.raises(ValueError, match="key was not kept"):
        issue_client_certificate(make_tls_files(tmp_path / "plain"), "dormant.gateway")


def test_callers_publish_wake_requests_and_only_the_controller_reads_them() -> None:
    plan = SecurityPlan.for_mesh(services=["svc"], callers=["alice"])
    roles = {role["rolename"]: role["acls"] for role in plan.dynsec_config()["roles"]}
    grants = {name: {(a["acltype"], a["topic"]) for a in acls} for name, acls in roles.items()}
    assert ("publishClientSend", "mesh/wake/#") in grants["caller"]
    assert ("subscribePattern", "mesh/wake/#") in grants["controller"]
    readers = {
        name
        for name, acls in grants.items()
        if any(
            kind in ("subscribePattern", "publishClientReceive") and topic.startswith("mesh/wake")
            for kind, topic in acls
        )
    }
    assert readers == {"controller"}
