"""The layer store: where app, dependency and shared layers live, pushed by publish and pulled by pods.

Two stores with one interface (``Store``), chosen by ``open_store`` from ``DORMANT_LAYER_STORE`` or a
``--layer-store`` flag: a directory holding a local OCI image layout (``LayerStore``, ``directory.py``),
or any OCI registry by the distribution spec (``RegistryStore``, ``registry.py``) named
``oci://host[:port][/prefix]`` (``location.py``). Both hold the same images, byte for byte (``oci.py``):
one gzip tar layer and a small config per manifest, so the catalog's ``name@sha256:<manifest digest>``
reference resolves the same way in either, and a pod pulls by that digest, verifies the sha256 of the
manifest and of the layer, and unpacks within ``UnpackLimits`` (refusing absolute paths, ``..``, links
and device files). A registry store keeps what it pulled in a bounded blob cache (``cache.py``).
The API is synchronous: async callers wrap it in ``asyncio.to_thread``.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

from .cache import DIR_ENV as CACHE_DIR_ENV
from .cache import BlobCache, default_cache_dir
from .directory import LayerStore
from .location import (
    DEPENDENCY_IMAGE_PREFIX,
    SHARED_LAYER_IMAGE_PREFIX,
    RegistryLocation,
    parse_registry_location,
)
from .oci import (
    CONFIG_MEDIA_TYPE,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_ENTRIES,
    INDEX_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    REF_NAME_ANNOTATION,
    UNPACK_MARKER,
    FetchCancelled,
    ImageRef,
    LayerIntegrityError,
    LayerLimitExceeded,
    LayerNotFound,
    LayerStoreError,
    MiB,
    RegistryAuthError,
    RegistryError,
    UnpackLimits,
    UnsafeLayerError,
)

__all__ = [
    "CACHE_DIR_ENV",
    "CONFIG_MEDIA_TYPE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_ENTRIES",
    "DEPENDENCY_IMAGE_PREFIX",
    "INDEX_MEDIA_TYPE",
    "LAYER_MEDIA_TYPE",
    "MANIFEST_MEDIA_TYPE",
    "REF_NAME_ANNOTATION",
    "SHARED_LAYER_IMAGE_PREFIX",
    "UNPACK_MARKER",
    "BlobCache",
    "FetchCancelled",
    "ImageRef",
    "LayerIntegrityError",
    "LayerLimitExceeded",
    "LayerNotFound",
    "LayerStore",
    "LayerStoreError",
    "MiB",
    "RegistryAuthError",
    "RegistryError",
    "RegistryLocation",
    "Store",
    "UnpackLimits",
    "UnsafeLayerError",
    "is_registry",
    "open_store",
]


class Store(Protocol):
    """What publish pushes to and pods pull from: a directory (``LayerStore``) or a registry.

    An image *name* is a service (``user-service``), ``dormant-deps-<lock hash>`` or
    ``dormant-layer-<name>``, optionally with ``:tag``; pushing moves the name (its ``latest`` tag in a
    registry) to the new image. Everything read is verified against its digest."""

    limits: UnpackLimits

    def push(self, name: str, layer: bytes, *, annotations: dict[str, str] | None = None) -> ImageRef:
        """Store ``layer`` as image ``name``; the same inputs always give the same reference."""
        ...

    def tag(self, ref: ImageRef, tag: str) -> None:
        """Name the stored image ``ref`` also ``<its name>:<tag>`` (a version's tag, ``v3``)."""
        ...

    def lookup(self, name: str) -> str | None:
        """The manifest digest image ``name`` (or ``name:tag``) points at, or None."""
        ...

    def resolve(self, ref: str | ImageRef, *, cancel: threading.Event | None = None) -> ImageRef:
        """The verified reference, its layer digest filled in (``name@digest``, ``ImageRef`` or a name)."""
        ...

    def pull_layer(self, ref: str | ImageRef) -> bytes:
        """The verified layer bytes, in memory."""
        ...

    def unpack(self, ref: str | ImageRef, dest: Path, *, cancel: threading.Event | None = None) -> Path:
        """Extract the verified layer into ``dest`` atomically (a no-op when it is there already);
        ``cancel`` interrupts waits on a registry (``FetchCancelled``)."""
        ...


def is_registry(location: str | os.PathLike[str]) -> bool:
    """True when ``location`` names a registry (``oci://``), False for a directory. ``ValueError`` for a
    malformed registry location."""
    return parse_registry_location(os.fspath(location)) is not None


def open_store(
    location: str | os.PathLike[str],
    *,
    limits: UnpackLimits | None = None,
    cache_dir: Path | None = None,
) -> Store:
    """The store at ``location``: a registry for ``oci://…`` / ``oci+http://…``, else a directory.

    A registry store caches pulled blobs in ``$DORMANT_LAYER_CACHE_DIR`` when set, else ``cache_dir``,
    else ``~/.cache/dormant/blobs``. ``ValueError`` for a registry location or setting that cannot work
    (it names the setting)."""
    text = os.fspath(location)
    registry = parse_registry_location(text)
    if registry is None:
        return LayerStore(Path(text), limits=limits)
    from .registry import RegistryStore  # lazy: start-up time (httpx), only for registry stores

    configured = os.environ.get(CACHE_DIR_ENV)
    root = Path(configured) if configured else (cache_dir if cache_dir is not None else default_cache_dir())
    return RegistryStore(registry, limits=limits, cache=BlobCache(root))
