"""deploy/emqx/dormant_containers.py: throwaway Postgres and EMQX for users with Docker. Docker is not
part of this suite: here the module must say why it cannot run, its fixtures must skip cleanly, and
what it would give EMQX must be deploy/emqx's settings."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
EMQX = ROOT / "deploy" / "emqx"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dormant_containers", EMQX / "dormant_containers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def docker_present() -> bool:
    return os.path.exists("/var/run/docker.sock") or bool(os.environ.get("DOCKER_HOST"))


def test_it_says_why_containers_cannot_run() -> None:
    if docker_present():
        pytest.skip("Docker is here: the reason is None")
    reason = load().docker_unavailable()
    assert reason is not None
    assert "Docker is not reachable" in reason or "testcontainers is not installed" in reason


def test_the_fixtures_skip_cleanly_without_docker(tmp_path: Path) -> None:
    if docker_present():
        pytest.skip("Docker is here: the fixtures would start containers")
    (tmp_path / "test_uses_containers.py").write_text(
        "def test_it(emqx_container, postgres_container):\n    raise AssertionError('ran without Docker')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(EMQX)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "dormant_containers", "-p", "no:cacheprovider",
         str(tmp_path / "test_uses_containers.py")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout and re.search(r"SKIPPED .*(Docker|testcontainers)", done.stdout)


def test_the_broker_gets_deploy_emqx_settings() -> None:
    module = load()
    env = module.emqx_environment()
    conf = (EMQX / "emqx.conf").read_text()
    assert "shared_subscription_strategy = round_robin_per_group" in conf
    assert env["EMQX_MQTT__SHARED_SUBSCRIPTION_STRATEGY"] == "round_robin_per_group"
    for setting, variable in (("max_inflight", "MAX_INFLIGHT"), ("max_mqueue_len", "MAX_MQUEUE_LEN"),
                              ("retry_interval", "RETRY_INTERVAL")):  # fmt: skip
        value = re.search(rf"^\s*{setting} = (\S+)$", conf, re.MULTILINE)
        assert value is not None and env[f"EMQX_MQTT__{variable}"] == value.group(1)
    assert "nth(3, tokens(username, '.'))" in env["EMQX_MQTT__CLIENT_ATTRS_INIT"]
    assert env["EMQX_AUTHORIZATION__NO_MATCH"] == "deny"
    assert env["EMQX_AUTHORIZATION__SOURCES__1__PATH"].endswith("/dormant-acl.conf")
    assert env["EMQX_AUTHENTICATION__1__BACKEND"] == "built_in_database"


def test_accounts_and_urls() -> None:
    module = load()
    csv = module.accounts_csv({"runtimes": "r1", "controller": "c1"}).splitlines()
    assert csv == [
        "user_id,password,is_superuser",
        "dormant.runtimes,r1,false",
        "dormant.controller,c1,false",
    ]
    broker = module.EmqxBroker("127.0.0.1", 41883, {"runtimes": "r1", "caller": "d1"})
    assert broker.url("runtimes") == "mqtt://dormant.runtimes:r1@127.0.0.1:41883"
    assert broker.url("caller") == "mqtt://developer:d1@127.0.0.1:41883"
    assert "r1" not in repr(broker)


def test_the_kind_walkthroughs_emqx_values_match() -> None:
    import yaml  # type: ignore[import-untyped]  # PyYAML, with datamodel-code-generator

    values = yaml.safe_load((ROOT / "deploy" / "helm" / "emqx-values-kind.yaml").read_text())
    config = values["emqxConfig"]
    for name, value in load().emqx_environment().items():
        assert config[name] == value, name
    mounts = {m["mountPath"]: m for m in values["extraVolumeMounts"]}
    volumes = {v["name"]: v for v in values["extraVolumes"]}
    acl = mounts[config["EMQX_AUTHORIZATION__SOURCES__1__PATH"]]
    assert (
        acl["subPath"] == "dormant-acl.conf" and volumes[acl["name"]]["configMap"]["name"] == "dormant-emqx"
    )
    accounts = mounts[config["EMQX_AUTHENTICATION__1__BOOTSTRAP_FILE"]]
    assert accounts["subPath"] == "emqx-bootstrap.csv"
    assert volumes[accounts["name"]]["secret"]["secretName"] == "dormant-broker"
