"""What every layer store shares: the image format, references, errors and the verified, bounded unpack.

An image is an OCI image manifest with one layer (``application/vnd.oci.image.layer.v1.tar+gzip``) and a
small deterministic config blob (``build_image``): the same layer, name and annotations always give the
same manifest bytes, so the same digests in a directory store and in a registry.

``unpack_blob`` streams a layer blob: it reads it in chunks, hashing them as it decompresses and
extracts, so neither the blob nor the tree is ever held in memory. It extracts plain files and
directories only, into a staging directory that replaces the destination atomically once the digest
is verified. Every layer is bounded by ``UnpackLimits`` (total unpacked bytes, entries; configurable
with ``DORMANT_LAYER_MAX_BYTES`` and ``DORMANT_LAYER_MAX_ENTRIES``), checked before a member is
written and again while its bytes are copied; the decompressed stream itself is capped too, so a gzip
bomb stops at the limit. Refused with ``UnsafeLayerError``: absolute paths, ``..``, links of any kind,
device files and FIFOs, sparse members (GNU or PAX: a tiny header may declare gigabytes).
Over a limit: ``LayerLimitExceeded``. A blob that does not hash to its digest: ``LayerIntegrityError``,
whatever else went wrong while reading it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.dormant.app.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
UNPACK_MARKER = ".dormant-layer"

MiB = 1024 * 1024
DEFAULT_MAX_BYTES = 512 * MiB
DEFAULT_MAX_ENTRIES = 20_000
MAX_MANIFEST_BYTES = 4 * MiB
_CHUNK = 1024 * 1024
CHUNK = _CHUNK
"""Read and write size of streamed blobs."""
_HEADER_ALLOWANCE = 4096
"""Decompressed bytes allowed per entry beyond its content: tar headers, PAX records, padding."""

_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_REF_RE = re.compile(r"^(?P<name>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")


class LayerStoreError(Exception):
    """Base of every layer store failure."""


class LayerNotFound(LayerStoreError):
    """The named image, manifest or blob is not in the store."""


class LayerIntegrityError(LayerStoreError):
    """A blob's content does not match its digest (or a manifest is malformed)."""


class UnsafeLayerError(LayerStoreError):
    """A layer holds an entry that must not be extracted (absolute path, ``..``, link, device, sparse)."""


class LayerLimitExceeded(LayerStoreError):
    """A layer unpacks to more bytes or entries than ``UnpackLimits`` allow."""


class RegistryError(LayerStoreError):
    """A registry answered with an error, or could not be reached before the retry deadline."""


class RegistryAuthError(RegistryError):
    """A registry (or its token service) wants credentials that are missing, or refused them."""


class FetchCancelled(LayerStoreError):
    """The caller gave up (its ``cancel`` event was set) while a store waited or downloaded."""


def _env_limit(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"[0-9]{1,15}", raw, re.ASCII) or int(raw) < 1:
        raise ValueError(f"{name} must be a positive integer in digits 0-9, not {raw!r}")
    return int(raw)


@dataclass(frozen=True, slots=True)
class UnpackLimits:
    """Bounds on one unpacked layer: total bytes of file content and number of entries (files + dirs)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_entries: int = DEFAULT_MAX_ENTRIES

    @classmethod
    def from_env(cls) -> UnpackLimits:
        """``DORMANT_LAYER_MAX_BYTES`` and ``DORMANT_LAYER_MAX_ENTRIES``, else the defaults."""
        return cls(
            max_bytes=_env_limit("DORMANT_LAYER_MAX_BYTES", DEFAULT_MAX_BYTES),
            max_entries=_env_limit("DORMANT_LAYER_MAX_ENTRIES", DEFAULT_MAX_ENTRIES),
        )

    @property
    def max_stream_bytes(self) -> int:
        """Decompressed tar bytes allowed: the content plus headers for every entry, and the trailer."""
        return self.max_bytes + (self.max_entries + 2) * _HEADER_ALLOWANCE + 64 * 1024


@dataclass(frozen=True, slots=True)
class ImageRef:
    """An immutable reference to one app image: its name and manifest digest (plus its layer digest).

    ``layer_digest`` is empty for a reference parsed from text; a store's ``resolve`` fills it in.
    """

    name: str
    manifest_digest: str
    layer_digest: str = ""

    def __str__(self) -> str:
        return f"{self.name}@{self.manifest_digest}"

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse ``name@sha256:<64 hex>``; raises ``ValueError`` on any other shape."""
        match = _REF_RE.match(text.strip())
        if match is None:
            raise ValueError(f"invalid image reference {text!r}: expected name@sha256:<64 hex digits>")
        return cls(match["name"], match["digest"])


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> str:
    if not _DIGEST_RE.match(digest):
        raise LayerIntegrityError(f"malformed digest {digest!r}")
    return digest


@dataclass(frozen=True, slots=True)
class BuiltImage:
    """The blobs of one image, as ``build_image`` makes them (``manifest`` is what the digest names)."""

    name: str
    layer: bytes
    config: bytes
    manifest: bytes

    @property
    def ref(self) -> ImageRef:
        return ImageRef(self.name, digest_of(self.manifest), digest_of(self.layer))

    @property
    def config_digest(self) -> str:
        return digest_of(self.config)


def check_image_name(name: str) -> str:
    if not name or "@" in name or any(ch.isspace() for ch in name):
        raise ValueError(f"invalid image name {name!r}")
    return name


def build_image(name: str, layer: bytes, annotations: dict[str, str] | None = None) -> BuiltImage:
    """The config and manifest of image ``name`` holding ``layer``; deterministic (canonical JSON)."""
    check_image_name(name)
    notes = dict(sorted((annotations or {}).items()))
    config = _canonical({"annotations": notes, "name": name})
    manifest_obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": digest_of(layer), "size": len(layer)}],
    }
    if notes:
        manifest_obj["annotations"] = notes
    return BuiltImage(name, layer, config, _canonical(manifest_obj))


@dataclass(frozen=True, slots=True)
class LayerDescriptor:
    digest: str
    size: int


def app_layer(manifest_bytes: bytes, ref: ImageRef) -> LayerDescriptor:
    """The one layer of a Dormant image manifest (already checked to hash to ``ref.manifest_digest``).

    ``LayerIntegrityError`` for anything else, or a layer other than the one ``ref`` expects."""
    try:
        manifest = json.loads(manifest_bytes)
    except ValueError as exc:
        raise LayerIntegrityError(f"manifest {ref.manifest_digest} is not valid JSON") from exc
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    if (
        not isinstance(layers, list)
        or len(layers) != 1
        or not isinstance(layers[0], dict)
        or layers[0].get("mediaType") != LAYER_MEDIA_TYPE
    ):
        raise LayerIntegrityError(f"manifest {ref.manifest_digest} is not a one-layer Dormant app image")
    layer_digest = check_digest(str(layers[0].get("digest")))
    size = layers[0].get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise LayerIntegrityError(f"manifest {ref.manifest_digest} gives its layer no valid size")
    if ref.layer_digest and ref.layer_digest != layer_digest:
        raise LayerIntegrityError(
            f"{ref}: manifest names layer {layer_digest}, the reference expects {ref.layer_digest}"
        )
    return LayerDescriptor(layer_digest, size)


def unpacked_digest(dest: Path) -> str | None:
    """The layer digest the tree at ``dest`` was unpacked from (its marker), or None."""
    return _marker_digest(dest)


def unpack_blob(blob: Path, ref: ImageRef, dest: Path, limits: UnpackLimits) -> Path:
    """Extract the layer blob file ``blob`` of the resolved ``ref`` into ``dest`` atomically, verifying
    that the blob hashes to ``ref.layer_digest``; a no-op when ``dest`` already holds that layer.
    ``FileNotFoundError`` when ``blob`` does not exist."""
    dest = Path(dest)
    if _marker_digest(dest) == ref.layer_digest:
        return dest
    source = open(blob, "rb")  # closed by the with below
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.unpack-"))
    try:
        with source:
            _extract_verified(source, ref.layer_digest, staging, limits)
        marker = {"layer": ref.layer_digest, "manifest": ref.manifest_digest}
        (staging / UNPACK_MARKER).write_text(json.dumps(marker, sort_keys=True) + "\n")
        _swap_into_place(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if _marker_digest(dest) != ref.layer_digest:
        raise LayerStoreError(f"{dest} was replaced by another writer while unpacking {ref}")
    return dest


def _marker_digest(dest: Path) -> str | None:
    try:
        marker = json.loads((dest / UNPACK_MARKER).read_text())
    except (OSError, ValueError):
        return None
    layer = marker.get("layer") if isinstance(marker, dict) else None
    return layer if isinstance(layer, str) else None


def _safe_member_path(member: tarfile.TarInfo) -> PurePosixPath:
    name = member.name
    path = PurePosixPath(name)
    if not name or name.startswith("/") or path.is_absolute() or "\\" in name:
        raise UnsafeLayerError(f"layer entry {name!r} has an absolute or non-POSIX path")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts or ".." in parts:
        raise UnsafeLayerError(f"layer entry {name!r} escapes the destination")
    if member.issparse() or any(key.startswith("GNU.sparse") for key in member.pax_headers):
        raise UnsafeLayerError(f"layer entry {name!r} is a sparse file: sparse members are refused")
    if not (member.isfile() or member.isdir()):
        raise UnsafeLayerError(
            f"layer entry {name!r} is a link or special file: only files and dirs may be unpacked"
        )
    return PurePosixPath(*parts)


MAX_META_BYTES = 1 * MiB
"""Largest PAX or GNU long-name header: tarfile reads one whole into memory."""
_META_TYPES = (
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
)


class _BoundedTarInfo(tarfile.TarInfo):
    """Refuses, before tarfile processes them, headers that would make it read unbounded data."""

    def _proc_member(self, archive: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type == tarfile.GNUTYPE_SPARSE:
            # Its extended sparse map may run on for any number of blocks: refuse it at the header.
            raise UnsafeLayerError(f"layer entry {self.name!r} is a sparse file: sparse members are refused")
        if self.type in _META_TYPES and self.size > MAX_META_BYTES:
            raise LayerLimitExceeded(
                f"layer has a {self.size}-byte extended header (at most {MAX_META_BYTES})"
            )
        member: tarfile.TarInfo = super()._proc_member(archive)  # type: ignore[misc]
        return member


class _HashingReader:
    """Reads a file, feeding every byte read to sha256 (the blob's digest is checked at the end)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.sha256.update(data)
        return data

    def drain(self) -> str:
        """Read the rest of the file; the digest of all of it."""
        while self.read(_CHUNK):
            pass
        return "sha256:" + self.sha256.hexdigest()


class _CappedReader:
    """The decompressed tar stream, refusing to produce more than ``limit`` bytes (a gzip bomb)."""

    def __init__(self, inner: IO[bytes], limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self.produced = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _CHUNK
        data = self._inner.read(min(size, self._limit - self.produced + 1))
        self.produced += len(data)
        if self.produced > self._limit:
            raise LayerLimitExceeded(f"layer decompresses to more than {self._limit} bytes")
        return data


def _extract_verified(source: IO[bytes], digest: str, into: Path, limits: UnpackLimits) -> None:
    """Extract the gzip tar in ``source`` into ``into``, then check the blob hashes to ``digest``.

    When anything goes wrong, the digest decides what to report: a blob that does not hash to its
    digest is corrupt (``LayerIntegrityError``), whatever error its content caused on the way.
    """
    hashing = _HashingReader(source)
    try:
        try:
            with gzip.GzipFile(fileobj=hashing, mode="rb") as unzipped:  # type: ignore[call-overload]
                capped = _CappedReader(unzipped, limits.max_stream_bytes)
                with tarfile.open(  # type: ignore[call-overload]
                    fileobj=capped, mode="r|", tarinfo=_BoundedTarInfo
                ) as archive:
                    _extract_members(archive, into, limits)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise LayerIntegrityError(f"layer is not a valid gzip tar: {exc}") from exc
    except LayerStoreError:
        if hashing.drain() != digest:
            raise LayerIntegrityError(f"blob {digest} is corrupt: its content does not hash to it") from None
        raise
    actual = hashing.drain()
    if actual != digest:
        raise LayerIntegrityError(f"blob {digest} is corrupt: its content hashes to {actual}")


def _extract_members(archive: tarfile.TarFile, into: Path, limits: UnpackLimits) -> None:
    entries = 0
    total = 0
    for member in archive:
        entries += 1
        if entries > limits.max_entries:
            raise LayerLimitExceeded(f"layer has more than {limits.max_entries} entries")
        rel = _safe_member_path(member)
        target = into.joinpath(*rel.parts)
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, 0o755)
            continue
        if member.size < 0 or total + member.size > limits.max_bytes:
            raise LayerLimitExceeded(
                f"layer unpacks to more than {limits.max_bytes} bytes"
                f" (entry {member.name!r} has {member.size})"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_dir():
            raise UnsafeLayerError(f"layer entry {member.name!r} is both a file and a directory")
        content = archive.extractfile(member)
        if content is None:
            raise UnsafeLayerError(f"layer entry {member.name!r} has no content")
        with content, open(target, "wb") as out:
            while chunk := content.read(_CHUNK):
                total += len(chunk)
                if total > limits.max_bytes:
                    raise LayerLimitExceeded(f"layer unpacks to more than {limits.max_bytes} bytes")
                out.write(chunk)
        os.chmod(target, 0o755 if member.mode & 0o111 else 0o644)


def _swap_into_place(staging: Path, dest: Path) -> None:
    """Rename ``staging`` to ``dest``; an older ``dest`` is moved aside first and then removed."""
    old: Path | None = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
        os.rename(dest, old / "tree")
    try:
        os.rename(staging, dest)
    except OSError:
        # Another writer put a tree there in the meantime; keep theirs if it is the same layer.
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None and not dest.exists():
            os.rename(old / "tree", dest)
        if not dest.exists():
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
