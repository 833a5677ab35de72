"""``dormant_layers.LayerStore``: OCI layout round trip, determinism, integrity, safe unpack, concurrency."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import threading
from pathlib import Path

import pytest

from dormant_layers import (
    CONFIG_MEDIA_TYPE,
    DEFAULT_MAX_BYTES,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    REF_NAME_ANNOTATION,
    UNPACK_MARKER,
    ImageRef,
    LayerIntegrityError,
    LayerLimitExceeded,
    LayerNotFound,
    LayerStore,
    LayerStoreError,
    MiB,
    UnpackLimits,
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


# ---- bounds on unpacking (issue 9, item 13) ------------------------------------------------------

GiB = 1024**3


def _sparse_layer(real_size: int) -> bytes:
    """A GNU sparse member ('S') declaring ``real_size`` bytes with no data stored: a tiny layer."""
    info = tarfile.TarInfo("huge.bin")
    info.type = tarfile.GNUTYPE_SPARSE
    info.size = 0
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    # One sparse map entry (offset 0, 0 bytes) at 386 and the real size at 483, as GNU tar writes them.
    header[386:398] = tarfile.itn(0, 12, tarfile.GNU_FORMAT)
    header[398:410] = tarfile.itn(0, 12, tarfile.GNU_FORMAT)
    header[483:495] = tarfile.itn(real_size, 12, tarfile.GNU_FORMAT)
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % (sum(header) & 0o777777)
    return gzip.compress(bytes(header) + b"\0" * 1024, mtime=0)


def _pax_sparse_layer(real_size: int) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("huge.bin")
        info.pax_headers = {"GNU.sparse.size": str(real_size), "GNU.sparse.map": "0,0"}
        tar.addfile(info, io.BytesIO(b""))
    return gzip.compress(raw.getvalue(), mtime=0)


def _gzip_bomb(path: Path, content_size: int, *, declared: int | None = None) -> None:
    """A gzip tar holding one file of ``content_size`` zeros, written without ever holding it.

    A gzip file may be a series of members: one member for the tar header, then the same compressed
    MiB of zeros over and over (about 1 KiB each), so 1 GiB of content is a file of about 1 MB.
    """
    info = tarfile.TarInfo("zeros.bin")
    info.size = content_size if declared is None else declared
    zeros = gzip.compress(b"\0" * (1024 * 1024), compresslevel=9, mtime=0)
    with open(path, "wb") as out:
        out.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT), mtime=0))
        for _ in range(content_size // (1024 * 1024)):
            out.write(zeros)
        out.write(gzip.compress(b"\0" * 1024, mtime=0))  # the tar trailer


def _push_file(store: LayerStore, name: str, path: Path) -> ImageRef:
    """Push a layer stored in a file (push() takes bytes; a 1 MB bomb is small enough for that)."""
    return store.push(name, path.read_bytes())


@pytest.mark.parametrize(
    "layer",
    [
        pytest.param(_sparse_layer(10 * GiB), id="gnu-sparse"),
        pytest.param(_pax_sparse_layer(10 * GiB), id="pax"),
    ],
)
def test_sparse_members_are_refused_without_writing_anything(tmp_path: Path, layer: bytes) -> None:
    assert len(layer) < 1024
    store = LayerStore(tmp_path / "store")
    ref = store.push("sparse", layer)
    apps = tmp_path / "apps"
    with pytest.raises(UnsafeLayerError, match="sparse"):
        store.unpack(ref, apps / "sparse")
    assert list(apps.iterdir()) == []


def test_a_gzip_bomb_stops_at_the_default_limit_without_big_memory(tmp_path: Path) -> None:
    import tracemalloc

    bomb = tmp_path / "bomb.tar.gz"
    _gzip_bomb(bomb, GiB)
    assert bomb.stat().st_size < 2 * 1024 * 1024
    store = LayerStore(tmp_path / "store", limits=UnpackLimits())
    ref = _push_file(store, "bomb", bomb)
    apps = tmp_path / "apps"
    tracemalloc.start()
    try:
        with pytest.raises(LayerLimitExceeded, match=str(DEFAULT_MAX_BYTES)):
            store.unpack(ref, apps / "bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"unpack held {peak} bytes"
    assert list(apps.iterdir()) == []


def test_a_header_that_understates_the_content_cannot_write_more(tmp_path: Path) -> None:
    # The header says 1 KiB; the stream carries 64 MiB of zeros after it, which read as end-of-archive.
    bomb = tmp_path / "liar.tar.gz"
    _gzip_bomb(bomb, 64 * 1024 * 1024, declared=1024)
    store = LayerStore(tmp_path / "store", limits=UnpackLimits(max_bytes=MiB, max_entries=10))
    dest = store.unpack(_push_file(store, "liar", bomb), tmp_path / "apps" / "liar")
    assert (dest / "zeros.bin").stat().st_size == 1024


def test_total_size_and_entry_count_are_capped(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "store", limits=UnpackLimits(max_bytes=10_000, max_entries=50))
    many = make_layer({f"f{i:03}.txt": b"x" for i in range(51)})
    with pytest.raises(LayerLimitExceeded, match="more than 50 entries"):
        store.unpack(store.push("many", many), tmp_path / "apps" / "many")
    big = make_layer({f"part{i}": b"y" * 4000 for i in range(3)})  # 12,000 bytes in files of 4,000
    with pytest.raises(LayerLimitExceeded, match="more than 10000 bytes"):
        store.unpack(store.push("big", big), tmp_path / "apps" / "big")
    fits = make_layer({f"f{i:02}.txt": b"z" * 200 for i in range(49)})  # 49 files + nothing else
    dest = store.unpack(store.push("fits", fits), tmp_path / "apps" / "fits")
    assert len([p for p in dest.iterdir() if p.name != UNPACK_MARKER]) == 49
    assert sorted(p.name for p in (tmp_path / "apps").iterdir()) == ["fits"]


def test_a_huge_extended_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    info = tarfile.TarInfo("././@PaxHeader")
    info.type = tarfile.XHDTYPE
    info.size = GiB
    layer = gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 4096, mtime=0)
    store = LayerStore(tmp_path / "store")
    with pytest.raises(LayerLimitExceeded, match="extended header"):
        store.unpack(store.push("pax", layer), tmp_path / "apps" / "pax")


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DORMANT_LAYER_MAX_BYTES", "1000")
    monkeypatch.setenv("DORMANT_LAYER_MAX_ENTRIES", "7")
    assert LayerStore(tmp_path).limits == UnpackLimits(max_bytes=1000, max_entries=7)
    monkeypatch.setenv("DORMANT_LAYER_MAX_ENTRIES", "٣")
    with pytest.raises(ValueError, match="DORMANT_LAYER_MAX_ENTRIES"):
        UnpackLimits.from_env()


def test_a_corrupt_blob_is_reported_as_corrupt_even_when_its_content_breaks_the_rules(tmp_path: Path) -> None:
    store = LayerStore(tmp_path / "store")
    ref = store.push("evil", make_layer({"../evil.py": b"x"}))
    blob = store.blob_path(ref.layer_digest)
    blob.write_bytes(blob.read_bytes() + b"trailing garbage")  # the tar still reads; the digest does not
    with pytest.raises(LayerIntegrityError, match="corrupt"):
        store.unpack(ref, tmp_path / "apps" / "evil")


def test_the_sidecar_reports_why_a_layer_was_refused(tmp_path: Path) -> None:
    import asyncio

    from dormant_sidecar.fetch import LayerFetchFailed, fetch_layer

    store = LayerStore(tmp_path / "store")
    ref = store.push("sparse", _sparse_layer(10 * GiB))
    with pytest.raises(LayerFetchFailed, match="sparse"):
        asyncio.run(fetch_layer(tmp_path / "store", str(ref), tmp_path / "work"))


def test_the_pod_takes_the_limits_from_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dormant_sidecar.cli import build_parser, pod_from_args

    monkeypatch.delenv("DORMANT_LAYER_MAX_BYTES", raising=False)
    monkeypatch.delenv("DORMANT_LAYER_MAX_ENTRIES", raising=False)
    args = build_parser().parse_args(
        ["--work-dir", str(tmp_path), "--layer-max-bytes", "4096", "--layer-max-entries", "9"]
    )
    assert pod_from_args(args).layer_limits == UnpackLimits(max_bytes=4096, max_entries=9)
    assert LayerStore(tmp_path).limits == UnpackLimits()  # the process environment is left alone
    monkeypatch.setenv("DORMANT_LAYER_MAX_BYTES", "lots")
    with pytest.raises(SystemExit, match="DORMANT_LAYER_MAX_BYTES"):
        pod_from_args(build_parser().parse_args(["--work-dir", str(tmp_path)]))
