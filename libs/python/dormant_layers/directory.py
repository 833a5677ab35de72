"""The directory store: a local OCI image layout holding one gzip tar layer per image.

Layout (OCI image-spec 1.1): ``oci-layout``, ``index.json`` and ``blobs/sha256/<hex>``. ``index.json``
names each image with ``org.opencontainers.image.ref.name`` (a name, or ``name:tag`` for a tag).
Blobs are content-addressed and written with temp file + ``os.replace``; ``index.json`` is rewritten
under an ``flock``, so concurrent writers (threads or processes) never corrupt the store. Every read
verifies sha256 digests. The API is synchronous: async callers wrap it in ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .oci import (
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    MAX_MANIFEST_BYTES,
    REF_NAME_ANNOTATION,
    ImageRef,
    LayerIntegrityError,
    LayerNotFound,
    UnpackLimits,
    app_layer,
    build_image,
    check_digest,
    check_image_name,
    digest_of,
    unpack_blob,
)


class LayerStore:
    """A local OCI image layout directory at ``root``, created on first write."""

    def __init__(self, root: Path, *, limits: UnpackLimits | None = None) -> None:
        self.root = Path(root)
        self.limits = limits if limits is not None else UnpackLimits.from_env()

    def __str__(self) -> str:
        return str(self.root)

    # ---- paths -------------------------------------------------------------------------------

    @property
    def _blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    def blob_path(self, digest: str) -> Path:
        """Where the blob with ``digest`` lives (it may not exist)."""
        return self._blobs / check_digest(digest).removeprefix("sha256:")

    # ---- writing -----------------------------------------------------------------------------

    def push(self, name: str, layer: bytes, *, annotations: dict[str, str] | None = None) -> ImageRef:
        """Store ``layer`` as image ``name`` and point the index entry for ``name`` at it.

        Deterministic: the same layer, name and annotations always give the same manifest digest.
        """
        image = build_image(name, layer, annotations)
        self._ensure_layout()
        self._write_blob(image.layer)
        self._write_blob(image.config)
        self._write_blob(image.manifest)
        ref = image.ref
        self._point(name, ref.manifest_digest, len(image.manifest))
        return ref

    def tag(self, ref: ImageRef, tag: str) -> None:
        """Name the image ``ref`` also ``<name>:<tag>`` in the index (its name without a tag of its own)."""
        manifest = self.read_blob(ref.manifest_digest, max_bytes=MAX_MANIFEST_BYTES)
        self._point(f"{ref.name.partition(':')[0]}:{tag}", ref.manifest_digest, len(manifest))

    def _point(self, name: str, manifest_digest: str, size: int) -> None:
        check_image_name(name)
        entry = {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": size,
            "annotations": {REF_NAME_ANNOTATION: name},
        }
        with self._index_lock():
            index = self._read_index()
            manifests = [m for m in index["manifests"] if _ref_name(m) != name]
            manifests.append(entry)
            manifests.sort(key=lambda m: (_ref_name(m) or "", str(m.get("digest", ""))))
            index["manifests"] = manifests
            self._atomic_write(self.root / "index.json", json.dumps(index, indent=2).encode() + b"\n")

    def _ensure_layout(self) -> None:
        self._blobs.mkdir(parents=True, exist_ok=True)
        layout = self.root / "oci-layout"
        if not layout.exists():
            self._atomic_write(layout, b'{"imageLayoutVersion":"1.0.0"}')

    def _write_blob(self, data: bytes) -> str:
        digest = digest_of(data)
        path = self.blob_path(digest)
        try:
            if digest_of(path.read_bytes()) == digest:
                return digest
        except FileNotFoundError:
            pass
        self._atomic_write(path, data)
        return digest

    @staticmethod
    def _atomic_write(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def _index_lock(self) -> Iterator[None]:
        # flock locks belong to the open file description: threads that each open the lock file
        # exclude one another just as separate processes do.
        with open(self.root / "index.json.lock", "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # ---- reading -----------------------------------------------------------------------------

    def _read_index(self) -> dict[str, Any]:
        path = self.root / "index.json"
        try:
            index = json.loads(path.read_bytes())
        except FileNotFoundError:
            return {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        except ValueError as exc:
            raise LayerIntegrityError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
            raise LayerIntegrityError(f"{path} is not an OCI image index")
        return index

    def names(self) -> dict[str, str]:
        """Every image name in the index with the manifest digest it points at."""
        return {
            name: str(m["digest"])
            for m in self._read_index()["manifests"]
            if (name := _ref_name(m)) is not None
        }

    def lookup(self, name: str) -> str | None:
        """The manifest digest the image name (or ``name:tag``) points at, or None."""
        return self.names().get(name)

    def read_blob(self, digest: str, *, max_bytes: int | None = None) -> bytes:
        """The blob's bytes after checking they hash to ``digest`` (at most ``max_bytes`` of them)."""
        path = self.blob_path(digest)
        try:
            with open(path, "rb") as fh:
                data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
        except FileNotFoundError:
            raise LayerNotFound(f"blob {digest} is not in {self.root}") from None
        if max_bytes is not None and len(data) > max_bytes:
            raise LayerIntegrityError(f"blob {digest} is larger than {max_bytes} bytes")
        if digest_of(data) != digest:
            raise LayerIntegrityError(f"blob {digest} is corrupt: its content hashes to {digest_of(data)}")
        return data

    def resolve(self, ref: str | ImageRef, *, cancel: threading.Event | None = None) -> ImageRef:
        """Read and verify the manifest of ``ref`` (``name@digest``, ``ImageRef`` or an indexed name)."""
        if isinstance(ref, str):
            if "@" in ref:
                ref = ImageRef.parse(ref)
            else:
                digest = self.lookup(ref)
                if digest is None:
                    raise LayerNotFound(f"no image named {ref!r} in {self.root}")
                ref = ImageRef(ref, digest)
        manifest = self.read_blob(ref.manifest_digest, max_bytes=MAX_MANIFEST_BYTES)
        return ImageRef(ref.name, ref.manifest_digest, app_layer(manifest, ref).digest)

    def pull_layer(self, ref: str | ImageRef) -> bytes:
        """The verified bytes of the image's layer (a gzip tar), in memory: ``unpack`` streams instead."""
        return self.read_blob(self.resolve(ref).layer_digest)

    def unpack(self, ref: str | ImageRef, dest: Path, *, cancel: threading.Event | None = None) -> Path:
        """Extract the verified layer into ``dest`` atomically; a no-op when ``dest`` already holds it.

        ``cancel`` is part of the store interface: it interrupts a registry's waits; a directory store
        never waits."""
        resolved = self.resolve(ref)
        try:
            return unpack_blob(self.blob_path(resolved.layer_digest), resolved, dest, self.limits)
        except FileNotFoundError as exc:
            if exc.filename != str(self.blob_path(resolved.layer_digest)):
                raise
            raise LayerNotFound(f"blob {resolved.layer_digest} is not in {self.root}") from None


def _ref_name(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    notes = entry.get("annotations")
    name = notes.get(REF_NAME_ANNOTATION) if isinstance(notes, dict) else None
    return name if isinstance(name, str) else None
