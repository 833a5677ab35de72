"""``dormant.layers.LayerStore``: OCI layout round trip, determinism, integrity, safe unpack, concurrency."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from dormant.layers import (
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    REF_NAME_ANNOTATION,
    UNPACK_MARKER,
    ImageRef,
    LayerIntegrityError,
    LayerNotFound,
    LayerStore,
    LayerStoreError,
    UnsafeLayerError,
)


def make_layer(files: dict[str, bytes], *, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


LAYER = make_layer({"app/handlers.py": b"print('hi')\n", "dormant-app.json": b'{"service": "svc"}\n'})


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_push_writes_an_oci_layout_and_round_trips(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "store")
    ref = store.push("user-service", LAYER, annotations={"io.dormant.interface-hash": "sha256:abc"})
    root = tmp_path / "store"
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((root / "index.json").read_text())
    assert index["schemaVersion"] == 2
    [entry] = index["manifests"]
    assert entry["digest"] == ref.manifest_digest
    assert entry["mediaType"] == MANIFEST_MEDIA_TYPE
    assert entry["annotations"] == {REF_NAME_ANNOTATION: "user-service"}
    manifest_bytes = (root / "blobs" / "sha256" / ref.manifest_digest.removeprefix("sha256:")).read_bytes()
    assert sha(manifest_bytes) == ref.manifest_digest == entry["digest"]
    assert entry["size"] == len(manifest_bytes)
    manifest = json.loads(manifest_bytes)
    assert manifest["config"]["mediaType"] == CONFIG_MEDIA_TYPE
    assert manifest["layers"] == [{"mediaType": LAYER_MEDIA_TYPE, "digest": sha(LAYER), "size": len(LAYER)}]
    assert manifest["annotations"] == {"io.dormant.interface-hash": "sha256:abc"}
    assert ref.layer_digest == sha(LAYER)

    assert str(ref) == f"user-service@{ref.manifest_digest}"
    assert store.pull_layer(ref) == LAYER
    assert store.pull_layer(str(ref)) == LAYER
    assert store.pull_layer("user-service") == LAYER
    assert store.resolve(str(ref)) == ref
    assert store.names() == {"user-service": ref.manifest_digest}


def test_image_ref_parse() -> None:
    digest = "sha256:" + "a" * 64
    assert ImageRef.parse(f"reg.local:5000/apps/user-service@{digest}") == ImageRef(
        "reg.local:5000/apps/user-service", digest, ""
    )
    for bad in ("user-service", f"@{digest}", "svc@sha256:abc", f"svc@sha512:{'a' * 64}", f"a b@{digest}"):
        with pytest.raises(ValueError):
            ImageRef.parse(bad)


def test_same_layer_and_name_give_the_same_manifest_digest(tmp_path: Path) -> None:
    one = LayerStore(tmp_path / "one").push("svc", LAYER)
    two = LayerStore(tmp_path / "two").push("svc", LAYER)
    again = LayerStore(tmp_path / "one").push("svc", LAYER)
    assert one == two == again
    assert LayerStore(tmp_path / "one").push("other", LAYER).manifest_digest != one.manifest_digest
    index = json.loads((tmp_path / "one" / "index.json").read_text())
    assert [m["annotations"][REF_NAME_ANNOTATION] for m in index["manifests"]] == ["other", "svc"]


def test_repush_moves_the_name_but_old_digests_stay_resolvable(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    old = store.push("svc", LAYER)
    newer_layer = make_layer({"a.py": b"v2\n"})
    new = store.push("svc", newer_layer)
    assert store.names() == {"svc": new.manifest_digest}
    assert store.pull_layer(old) == LAYER
    assert store.pull_layer("svc") == newer_layer


def test_corruption_is_detected(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    ref = store.push("svc", LAYER)
    layer_blob = store.blob_path(ref.layer_digest)
    data = bytearray(layer_blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    layer_blob.write_bytes(bytes(data))
    with pytest.raises(LayerIntegrityError):
        store.pull_layer(ref)
    with pytest.raises(LayerIntegrityError):
        store.unpack(ref, tmp_path / "app")
    assert not (tmp_path / "app").exists()

    manifest_blob = store.blob_path(ref.manifest_digest)
    manifest_blob.write_bytes(manifest_blob.read_bytes().replace(b"schemaVersion", b"schemaVersioN"))
    with pytest.raises(LayerIntegrityError):
        store.resolve(ref)


def test_a_reference_whose_layer_does_not_match_the_manifest_is_refused(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    ref = store.push("svc", LAYER)
    with pytest.raises(LayerIntegrityError):
        store.resolve(ImageRef(ref.name, ref.manifest_digest, "sha256:" + "0" * 64))


def test_missing_images_and_blobs(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    with pytest.raises(LayerNotFound):
        store.resolve("nothing")
    with pytest.raises(LayerNotFound):
        store.pull_layer(f"svc@sha256:{'1' * 64}")
    ref = store.push("svc", LAYER)
    store.blob_path(ref.layer_digest).unlink()
    with pytest.raises(LayerNotFound):
        store.pull_layer(ref)
    assert issubclass(LayerNotFound, LayerStoreError) and issubclass(LayerIntegrityError, LayerStoreError)


def test_unpack_extracts_and_is_idempotent(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "store")
    ref = store.push("svc", LAYER)
    dest = tmp_path / "apps" / "svc"
    assert store.unpack(ref, dest) == dest
    assert (dest / "app" / "handlers.py").read_bytes() == b"print('hi')\n"
    assert json.loads((dest / UNPACK_MARKER).read_text())["layer"] == ref.layer_digest
    (dest / "app" / "handlers.py").write_text("changed locally\n")
    store.unpack(ref, dest)  # same digest: returns at once, touches nothing
    assert (dest / "app" / "handlers.py").read_text() == "changed locally\n"

    newer = store.push("svc", make_layer({"v2.py": b"2\n"}))
    store.unpack(newer, dest)
    assert sorted(p.name for p in dest.iterdir()) == [UNPACK_MARKER, "v2.py"]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["svc"], "no temp dirs left behind"


def _member(name: str, kind: bytes, **attrs: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


@pytest.mark.parametrize(
    "layer",
    [
        pytest.param(make_layer({"../evil.py": b"x"}), id="dotdot"),
        pytest.param(make_layer({"ok/../../evil.py": b"x"}), id="nested-dotdot"),
        pytest.param(make_layer({"/etc/evil": b"x"}), id="absolute"),
        pytest.param(
            make_layer({}, extra=[_member("link", tarfile.SYMTYPE, linkname="/etc/passwd")]), id="symlink"
        ),
        pytest.param(
            make_layer({"a": b"x"}, extra=[_member("hard", tarfile.LNKTYPE, linkname="a")]), id="hardlink"
        ),
        pytest.param(make_layer({}, extra=[_member("dev", tarfile.CHRTYPE)]), id="device"),
        pytest.param(make_layer({}, extra=[_member("fifo", tarfile.FIFOTYPE)]), id="fifo"),
    ],
)
def test_malicious_layers_are_refused(tmp_path: Path, layer: bytes) -> None:
    store = LayerStore(tmp_path / "store")
    ref = store.push("evil", layer)
    apps = tmp_path / "apps"
    with pytest.raises(UnsafeLayerError):
        store.unpack(ref, apps / "evil")
    assert list(apps.iterdir()) == [], "nothing half-unpacked is left"
    assert not (tmp_path / "evil.py").exists()


def test_concurrent_pushes_leave_a_valid_index(tmp_path: Path) -> None:
    store_root = tmp_path / "store"
    errors: list[BaseException] = []
    refs: dict[str, list[ImageRef]] = {}
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            store = LayerStore(store_root)
            start.wait()
            for i in range(10):
                name = f"svc-{n % 4}"
                ref = store.push(name, make_layer({f"f{n}-{i}.py": b"x"}))
                with lock:
                    refs.setdefault(name, []).append(ref)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    store = LayerStore(store_root)
    index = json.loads((store_root / "index.json").read_text())
    names = [m["annotations"][REF_NAME_ANNOTATION] for m in index["manifests"]]
    assert names == ["svc-0", "svc-1", "svc-2", "svc-3"]
    for name, pushed in refs.items():
        assert len(pushed) == 20
        assert store.names()[name] in {r.manifest_digest for r in pushed}
        for ref in pushed:
            store.pull_layer(ref)
    leftovers = [p.name for p in (store_root / "blobs" / "sha256").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_pushing_again_repairs_a_corrupt_blob(tmp_path: Path) -> None:
    store = LayerStore(tmp_path)
    ref = store.push("svc", LAYER)
    store.blob_path(ref.layer_digest).write_bytes(b"garbage")
    with pytest.raises(LayerIntegrityError):
        store.pull_layer(ref)
    assert store.push("svc", LAYER) == ref
    assert store.pull_layer(ref) == LAYER
