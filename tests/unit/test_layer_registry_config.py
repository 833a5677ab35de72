"""The registry store's settings and pieces without a registry: locations, repository names,
credentials, ``WWW-Authenticate`` challenges, the bounded blob cache, and which store a location opens."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from dormant_layers import LayerStore, is_registry, open_store
from dormant_layers.auth import lookup_credentials, parse_challenge, token_from_response
from dormant_layers.cache import BlobCache
from dormant_layers.location import RegistryLocation, parse_registry_location
from dormant_layers.registry import RegistryStore


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "DORMANT_REGISTRY_USERNAME",
        "DORMANT_REGISTRY_PASSWORD",
        "DORMANT_REGISTRY_INSECURE",
        "DORMANT_LAYER_CACHE_DIR",
        "DORMANT_LAYER_CACHE_MAX_BYTES",
        "DORMANT_REGISTRY_RETRY_S",
        "DORMANT_REGISTRY_CA_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def test_registry_locations() -> None:
    assert parse_registry_location("/var/lib/dormant/layers") is None
    assert parse_registry_location("relative/layers") is None
    assert parse_registry_location("oci://registry.example.com/team/dormant") == RegistryLocation(
        "https", "registry.example.com", "team/dormant"
    )
    assert parse_registry_location("oci://Registry.Example.com:5443") == RegistryLocation(
        "https", "registry.example.com:5443", ""
    )
    local = parse_registry_location("oci+http://127.0.0.1:5000/dormant")
    assert local == RegistryLocation("http", "127.0.0.1:5000", "dormant") and local.loopback
    assert str(local) == "oci+http://127.0.0.1:5000/dormant"
    # Settings hold the store as a pathlib.Path, which collapses "//": the location survives it.
    assert parse_registry_location(str(Path("oci+http://127.0.0.1:5000/dormant"))) == local
    assert parse_registry_location("oci+http://localhost:5000") is not None
    assert parse_registry_location("oci+http://[::1]:5000/x") is not None


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("oci://ann:pw@registry.example.com/x", "carries no credentials"),
        ("oci+http://registry.example.com/x", "plain HTTP.*DORMANT_REGISTRY_INSECURE"),
        ("oci://registry.example.com/Upper", "not a valid repository path component"),
        ("oci://registry.example.com/x?tls=0", "no query"),
        ("oci://registry.example.com:99999/x", "port|names no host"),
    ],
)
def test_bad_registry_locations_are_refused(location: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_registry_location(location)


def test_plain_http_to_another_host_needs_the_insecure_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DORMANT_REGISTRY_INSECURE", "1")
    assert parse_registry_location("oci+http://registry.internal:5000/x") == RegistryLocation(
        "http", "registry.internal:5000", "x"
    )


def test_image_names_map_to_repositories() -> None:
    location = RegistryLocation("https", "r.example.com", "team")
    assert location.repository("user-service") == ("team/apps/user-service", "latest")
    assert location.repository("user-service:v3") == ("team/apps/user-service", "v3")
    assert location.repository("dormant-deps-" + "a" * 64) == ("team/deps/" + "a" * 64, "latest")
    assert location.repository("dormant-layer-utils") == ("team/layers/utils", "latest")
    assert RegistryLocation("https", "r.example.com").repository("svc") == ("apps/svc", "latest")
    with pytest.raises(ValueError, match="cannot be a registry repository"):
        location.repository("Bad_Name-")
    with pytest.raises(ValueError, match="not a valid registry tag"):
        location.repository("svc:-x")


def test_credentials_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lookup_credentials("r.example.com").credentials is None
    monkeypatch.setenv("DORMANT_REGISTRY_USERNAME", "ann")
    with pytest.raises(ValueError, match="both"):
        lookup_credentials("r.example.com")
    monkeypatch.setenv("DORMANT_REGISTRY_PASSWORD", "pw-123")
    found = lookup_credentials("r.example.com").credentials
    assert found is not None and (found.username, found.password) == ("ann", "pw-123")
    assert "pw-123" not in repr(found)


def test_credentials_from_dockers_config(tmp_path: Path) -> None:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    auth = base64.b64encode(b"bob:pw:with:colons").decode()
    config.write_text(
        json.dumps(
            {
                "auths": {
                    "https://r.example.com:5000/v1/": {"auth": auth},
                    "other.example.com": {"username": "carol", "password": "pw2"},
                    "token.example.com": {"identitytoken": "xyz"},
                },
                "credHelpers": {"helper.example.com": "gcr"},
            }
        )
    )
    found = lookup_credentials("r.example.com:5000").credentials
    assert found is not None and (found.username, found.password) == ("bob", "pw:with:colons")
    other = lookup_credentials("other.example.com").credentials
    assert other is not None and other.username == "carol"
    assert "identity token" in lookup_credentials("token.example.com").note
    assert "credential helper" in lookup_credentials("helper.example.com").note
    assert lookup_credentials("unknown.example.com").credentials is None


def test_challenges_and_token_answers() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",'
        'scope="repository:team/apps/svc:pull,push"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.example.com/token",
        "service": "registry.example.com",
        "scope": "repository:team/apps/svc:pull,push",
    }
    basic = parse_challenge('Basic realm="registry"')
    assert basic is not None and (basic.scheme, basic.params) == ("basic", {"realm": "registry"})
    token = token_from_response({"access_token": "abc", "expires_in": 300})
    assert token.value == "abc" and token.fresh and "abc" not in repr(token)
    short = token_from_response({"token": "t", "expires_in": 5})
    assert not short.fresh  # renewed before it expires
    with pytest.raises(ValueError, match="no token"):
        token_from_response({"expires_in": 60})


def _blob(cache: BlobCache, data: bytes) -> str:
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    cache.put(digest, data)
    return digest


def test_the_blob_cache_evicts_by_size_least_recently_used_first(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", max_bytes=250)
    first = _blob(cache, b"a" * 100)
    second = _blob(cache, b"b" * 100)
    old = time.time() - 100
    os.utime(cache.path(first), (old, old))
    os.utime(cache.path(second), (old + 1, old + 1))
    assert cache.get(first) is not None  # used: now the most recent
    third = _blob(cache, b"c" * 100)
    assert [digest for digest, _, _ in cache.entries()] == [first, third]
    assert cache.size() == 200 and cache.get(second) is None
    big = _blob(cache, b"d" * 300)  # more than the bound: kept (it is about to be used), the rest go
    assert cache.get(big) is not None and cache.size() == 300
    cache.release(big)
    assert cache.get(big) is None and cache.size() == 0


def test_stale_downloads_are_removed(tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", max_bytes=1000)
    stale, fresh = cache.temp_file(), cache.temp_file()
    old = time.time() - 7200
    os.utime(stale, (old, old))
    cache.trim()
    assert not stale.exists() and fresh.exists()


def test_the_cache_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DORMANT_LAYER_CACHE_MAX_BYTES", "4096")
    assert BlobCache(tmp_path).max_bytes == 4096
    monkeypatch.setenv("DORMANT_LAYER_CACHE_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="DORMANT_LAYER_CACHE_MAX_BYTES"):
        BlobCache(tmp_path)


def test_open_store_picks_the_store_by_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    directory = open_store(tmp_path / "layers")
    assert isinstance(directory, LayerStore) and directory.root == tmp_path / "layers"
    assert not is_registry(tmp_path) and is_registry("oci://r.example.com/x")
    registry = open_store("oci+http://127.0.0.1:5000/dormant", cache_dir=tmp_path / "given")
    assert isinstance(registry, RegistryStore) and registry.cache.root == tmp_path / "given"
    assert str(registry) == "oci+http://127.0.0.1:5000/dormant"
    monkeypatch.setenv("DORMANT_LAYER_CACHE_DIR", str(tmp_path / "shared"))
    shared = open_store("oci+http://127.0.0.1:5000/dormant", cache_dir=tmp_path / "given")
    assert isinstance(shared, RegistryStore) and shared.cache.root == tmp_path / "shared"
    monkeypatch.setenv("DORMANT_REGISTRY_RETRY_S", "soon")
    with pytest.raises(ValueError, match="DORMANT_REGISTRY_RETRY_S"):
        open_store("oci+http://127.0.0.1:5000/dormant")


def test_the_pod_checks_its_registry_settings_at_start_up(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from dormant_sidecar.cli import build_parser, pod_from_args

    monkeypatch.delenv("DORMANT_WORK_DIR", raising=False)
    monkeypatch.setenv("DORMANT_LAYER_STORE", "oci+http://127.0.0.1:5000/dormant")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    pod = pod_from_args(build_parser().parse_args([]))
    assert pod.work_dir == tmp_path / "data" / "dormant" / "work"  # not beside a "directory" named oci:
    monkeypatch.setenv("DORMANT_LAYER_STORE", "oci+http://registry.example.com/dormant")
    with pytest.raises(SystemExit, match="plain HTTP"):
        pod_from_args(build_parser().parse_args([]))
    monkeypatch.setenv("DORMANT_LAYER_STORE", "oci://registry.example.com/dormant")
    monkeypatch.setenv("DORMANT_REGISTRY_USERNAME", "ann")
    with pytest.raises(SystemExit, match="DORMANT_REGISTRY_PASSWORD"):
        pod_from_args(build_parser().parse_args([]))
