"""The registry store against a real distribution server: push and pull by digest, refused wrong blobs, a
registry restart in the middle of a pull, the bounded blob cache, basic and bearer authentication."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from e2e.registry_helpers import HoldingRelay, TokenService, random_layer

from dormant_layers import (
    FetchCancelled,
    LayerIntegrityError,
    LayerStore,
    RegistryAuthError,
    RegistryError,
    open_store,
)
from dormant_layers.cache import BlobCache
from dormant_layers.location import parse_registry_location
from dormant_layers.registry import RegistryStore
from dormant_local.registry import RegistryServer, TokenAuth

KiB = 1024
MiB = 1024 * KiB


def _store(
    location: str, cache: Path, *, retry_s: float = 60.0, max_bytes: int | None = None
) -> RegistryStore:
    parsed = parse_registry_location(location)
    assert parsed is not None
    return RegistryStore(parsed, cache=BlobCache(cache, max_bytes), retry_s=retry_s)


async def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        assert loop.time() < end, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _tags(registry: RegistryServer, repository: str, auth: tuple[str, str] | None = None) -> list[str]:
    response = httpx.get(f"{registry.url}/v2/{repository}/tags/list", auth=auth)
    response.raise_for_status()
    return sorted(response.json()["tags"])


def test_push_tag_and_pull_by_digest_with_the_directory_stores_digests(
    registry: RegistryServer, tmp_path: Path
) -> None:
    store = _store(registry.store_url(), tmp_path / "cache")
    layer = random_layer(64 * KiB, extra={"app.py": b"print('hi')\n"})
    notes = {"io.dormant.interface-hash": "abc"}
    ref = store.push("user-service", layer, annotations=notes)
    assert ref == LayerStore(tmp_path / "dir").push("user-service", layer, annotations=notes)  # same digests
    assert store.lookup("user-service") == ref.manifest_digest
    assert store.lookup("no-such-service") is None
    store.tag(ref, "v1")
    assert store.lookup("user-service:v1") == ref.manifest_digest
    assert _tags(registry, "dormant/apps/user-service") == ["latest", "v1"]

    deps = store.push("dormant-deps-" + "ab" * 32, random_layer(KiB))
    shared = store.push("dormant-layer-utils", random_layer(KiB))
    assert _tags(registry, "dormant/deps/" + "ab" * 32) == ["latest"]
    assert _tags(registry, "dormant/layers/utils") == ["latest"]
    assert store.resolve(str(deps)).layer_digest == deps.layer_digest
    assert store.resolve("dormant-layer-utils").layer_digest == shared.layer_digest

    # A pod's store: its own empty cache, the reference as the catalog has it.
    pod = _store(registry.store_url(), tmp_path / "pod-cache")
    dest = pod.unpack(str(ref), tmp_path / "unpacked")
    assert (dest / "app.py").read_bytes() == b"print('hi')\n"
    assert pod.pull_layer(ref) == layer
    assert pod.cache.get(ref.layer_digest) is not None and pod.cache.get(ref.manifest_digest) is not None
    assert pod.unpack(ref, dest) == dest  # already there: a no-op


def test_a_wrong_digest_blob_is_refused_nothing_unpacked_nothing_cached(
    registry: RegistryServer, tmp_path: Path
) -> None:
    layer = random_layer(256 * KiB, extra={"app.py": b"x = 1\n"})
    ref = _store(registry.store_url(), tmp_path / "pusher").push("svc", layer)
    blob = registry.blob_file(ref.layer_digest)
    original = blob.read_bytes()
    blob.write_bytes(random_layer(len(original))[: len(original)].ljust(len(original), b"\0"))  # same size

    pod = _store(registry.store_url(), tmp_path / "cache")
    dest = tmp_path / "layers" / "svc"
    with pytest.raises(
        LayerIntegrityError, match=r"corrupt.*refused: nothing unpacked, nothing cached"
    ) as info:
        pod.unpack(str(ref), dest)
    assert ref.layer_digest in str(info.value) and "127.0.0.1" in str(info.value)
    assert not (tmp_path / "layers").exists()  # refused before any unpacking: no staging left either
    assert pod.cache.get(ref.layer_digest) is None
    assert [digest for digest, _, _ in pod.cache.entries()] == [ref.manifest_digest]  # verified, kept
    assert not [p for p in (tmp_path / "cache" / "sha256").iterdir() if p.name.startswith(".")]

    blob.write_bytes(original + b"more")  # longer than the manifest says
    with pytest.raises(LayerIntegrityError, match="larger than"):
        pod.unpack(str(ref), dest)
    assert not dest.exists() and pod.cache.get(ref.layer_digest) is None

    blob.write_bytes(original)  # repaired: the same pod pulls it, nothing bad was kept
    assert (pod.unpack(str(ref), dest) / "app.py").read_bytes() == b"x = 1\n"


def test_a_corrupt_manifest_is_refused(registry: RegistryServer, tmp_path: Path) -> None:
    ref = _store(registry.store_url(), tmp_path / "pusher").push("svc", random_layer(KiB))
    manifest = registry.blob_file(ref.manifest_digest)
    # Still a valid manifest (the registry serves it), but not the bytes the digest names.
    manifest.write_bytes(manifest.read_bytes().replace(b'"schemaVersion":2', b'"schemaVersion": 2'))
    pod = _store(registry.store_url(), tmp_path / "cache")
    with pytest.raises(LayerIntegrityError, match=f"manifest {ref.manifest_digest}.*corrupt"):
        pod.resolve(str(ref))
    assert pod.cache.entries() == []


async def test_a_registry_restart_during_a_pull_is_retried_and_resumed(
    registry: RegistryServer, tmp_path: Path
) -> None:
    layer = random_layer(8 * MiB)
    ref = _store(registry.store_url(), tmp_path / "pusher").push("big", layer)
    relay = HoldingRelay(registry.port)
    try:
        pod = _store(f"oci+http://127.0.0.1:{relay.port}/dormant", tmp_path / "cache")
        relay.hold(after=1 * MiB)
        pulling = asyncio.ensure_future(asyncio.to_thread(pod.unpack, str(ref), tmp_path / "big"))
        assert await asyncio.to_thread(relay.held.wait, 60), "the pull never got under way"
        await registry.stop()  # while the pod holds the first MiB of the blob
        relay.release()  # its connection breaks mid-body
        await wait_for(lambda: relay.refused >= 2, "the pod retrying while the registry is down")
        assert not pulling.done()
        await registry.start()  # the same port and storage
        dest = await asyncio.wait_for(pulling, 120)
    finally:
        relay.close()
    assert (dest / "python" / "blob.bin").stat().st_size == 8 * MiB
    assert pod.pull_layer(ref) == layer
    assert relay.requests_with(b"range: bytes=") >= 1, "the download resumed instead of starting over"


async def test_an_unreachable_registry_fails_after_the_deadline_and_a_cancel_stops_the_wait(
    registry: RegistryServer, tmp_path: Path
) -> None:
    ref = _store(registry.store_url(), tmp_path / "pusher").push("svc", random_layer(KiB))
    await registry.stop()
    pod = _store(registry.store_url(), tmp_path / "cache", retry_s=1.0)
    with pytest.raises(RegistryError, match=rf"registry 127.0.0.1:{registry.port} unavailable"):
        pod.resolve(str(ref))

    patient = _store(registry.store_url(), tmp_path / "cache", retry_s=3600.0)
    cancel = threading.Event()
    outcome: list[BaseException] = []

    def pull() -> None:
        try:
            patient.unpack(str(ref), tmp_path / "svc", cancel=cancel)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=pull)
    worker.start()
    cancel.set()
    await asyncio.to_thread(worker.join, 60)
    assert not worker.is_alive() and isinstance(outcome[0], FetchCancelled)


async def test_a_pod_with_the_blobs_cached_unpacks_without_the_registry(
    registry: RegistryServer, tmp_path: Path
) -> None:
    ref = _store(registry.store_url(), tmp_path / "pusher").push("svc", random_layer(KiB))
    _store(registry.store_url(), tmp_path / "cache").unpack(str(ref), tmp_path / "first")
    await registry.stop()
    restarted = _store(registry.store_url(), tmp_path / "cache", retry_s=0)  # any request would fail
    assert (restarted.unpack(str(ref), tmp_path / "again") / "python" / "blob.bin").exists()


def test_the_blob_cache_is_bounded_and_evicts_the_least_recently_used(
    registry: RegistryServer, tmp_path: Path
) -> None:
    pusher = _store(registry.store_url(), tmp_path / "pusher")
    refs = {name: pusher.push(name, random_layer(300 * KiB)) for name in ("aaa", "bbb", "ccc")}
    bound = 700 * KiB  # two layers (and their manifests) fit, three do not
    pod = _store(registry.store_url(), tmp_path / "cache", max_bytes=bound)
    pod.unpack(refs["aaa"], tmp_path / "u" / "a1")
    pod.unpack(refs["bbb"], tmp_path / "u" / "b1")
    pod.unpack(refs["aaa"], tmp_path / "u" / "a2")  # aaa is now the more recently used
    pod.unpack(refs["ccc"], tmp_path / "u" / "c1")
    cached = {digest for digest, _, _ in pod.cache.entries()}
    assert refs["bbb"].layer_digest not in cached  # the least recently used went
    assert {refs["aaa"].layer_digest, refs["ccc"].layer_digest} <= cached
    assert pod.cache.size() <= bound
    pod.unpack(refs["bbb"], tmp_path / "u" / "b2")  # pulled again when needed
    assert pod.cache.size() <= bound and pod.cache.get(refs["bbb"].layer_digest) is not None


def test_a_blob_larger_than_the_whole_cache_is_used_then_dropped(
    registry: RegistryServer, tmp_path: Path
) -> None:
    ref = _store(registry.store_url(), tmp_path / "pusher").push("svc", random_layer(200 * KiB))
    pod = _store(registry.store_url(), tmp_path / "cache", max_bytes=100 * KiB)
    assert (pod.unpack(ref, tmp_path / "svc") / "python" / "blob.bin").exists()
    assert pod.cache.get(ref.layer_digest) is None and pod.cache.size() <= 100 * KiB


async def test_basic_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Passw0rd"
    async with RegistryServer(tmp_path / "registry", htpasswd={"ann": secret}) as registry:
        layer = random_layer(KiB)
        with pytest.raises(RegistryAuthError, match=r"wants credentials.*DORMANT_REGISTRY_USERNAME"):
            _store(registry.store_url(), tmp_path / "c0").push("svc", layer)

        monkeypatch.setenv("DORMANT_REGISTRY_USERNAME", "ann")
        monkeypatch.setenv("DORMANT_REGISTRY_PASSWORD", "wrong-" + secret)
        with pytest.raises(RegistryAuthError, match="refused the credentials") as refused:
            _store(registry.store_url(), tmp_path / "c1").push("svc", layer)
        assert secret not in str(refused.value)

        monkeypatch.setenv("DORMANT_REGISTRY_PASSWORD", secret)
        ref = _store(registry.store_url(), tmp_path / "c2").push("svc", layer)
        assert _tags(registry, "dormant/apps/svc", auth=("ann", secret)) == ["latest"]

        # docker login's config.json works as well, for a pod without the variables.
        monkeypatch.delenv("DORMANT_REGISTRY_USERNAME")
        monkeypatch.delenv("DORMANT_REGISTRY_PASSWORD")
        config = Path(str(tmp_path / "docker-config")) / "config.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"ann:{secret}".encode()).decode()
        config.write_text(json.dumps({"auths": {f"http://127.0.0.1:{registry.port}": {"auth": auth}}}))
        pod = open_store(registry.store_url(), cache_dir=tmp_path / "c3")
        assert pod.pull_layer(str(ref)) == layer
    assert secret not in caplog.text


async def test_bearer_token_auth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = TokenService(tmp_path / "tokens", user="ci", password="token-pw")
    auth = TokenAuth(tokens.realm, tokens.service, tokens.issuer, tokens.cert_file)
    try:
        async with RegistryServer(tmp_path / "registry", token=auth) as registry:
            layer = random_layer(KiB)
            with pytest.raises(
                RegistryAuthError, match=r"refused an anonymous request.*DORMANT_REGISTRY_USERNAME"
            ):
                _store(registry.store_url(), tmp_path / "c0").push("svc", layer)

            monkeypatch.setenv("DORMANT_REGISTRY_USERNAME", "ci")
            monkeypatch.setenv("DORMANT_REGISTRY_PASSWORD", "not-it")
            with pytest.raises(
                RegistryAuthError, match=r"token service at 127\.0\.0\.1 refused the credentials"
            ):
                _store(registry.store_url(), tmp_path / "c1").push("svc", layer)

            monkeypatch.setenv("DORMANT_REGISTRY_PASSWORD", "token-pw")
            store = _store(registry.store_url(), tmp_path / "c2")
            ref = store.push("svc", layer)
            store.tag(ref, "v1")
            assert store.lookup("svc:v1") == ref.manifest_digest
            pod = _store(registry.store_url(), tmp_path / "c3")
            assert (pod.unpack(str(ref), tmp_path / "svc") / "python" / "blob.bin").exists()
            granted = [r["scopes"] for r in tokens.requests if r["authorized"]]
            assert any(scopes[0] == "repository:dormant/apps/svc:pull,push" for scopes in granted)
            assert any(scopes[0] == "repository:dormant/apps/svc:pull" for scopes in granted)
            # One token per repository and actions, reused until it expires: not one per request.
            assert len(granted) <= 4
    finally:
        tokens.close()
