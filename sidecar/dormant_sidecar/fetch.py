"""Fetch a claimed version's layers: resolve each digest, verify it and unpack it (in a thread).

The layer store is a directory or a registry (``dormant_layers.open_store``): either way the sidecar
fetches by the catalog's ``name@sha256:<manifest digest>``. One store per location is kept for the
pod's life (a registry's connections and tokens are reused); a registry store caches pulled blobs in
``<work dir>/blobs`` (or ``$DORMANT_LAYER_CACHE_DIR``), bounded by ``DORMANT_LAYER_CACHE_MAX_BYTES``,
and retries a registry that is down or restarting for ``DORMANT_REGISTRY_RETRY_S`` before the fetch
fails. A fetch that is cancelled (the pod stops) stops waiting on the registry.

Besides the app layer, a claim lists extra layers (the version's dependency layer, then the function's
attached layers): each unpacks to its own folder by layer digest (shared by every version that uses
it), and its ``python/`` folder (plus ``python/lib/pythonX.Y/site-packages`` when it has one, the seed's
layout) is what the runtime puts on its import path, in the claim's order.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from dormant.config import default_layer_store
from dormant_layers import ImageRef, LayerStoreError, Store, UnpackLimits, is_registry, open_store

BLOB_CACHE_DIR = "blobs"
"""The registry blob cache's folder in the work dir."""


class LayerFetchFailed(Exception):
    """The layer could not be found, verified or unpacked; the message says why."""


def default_work_dir(layer_store: str | os.PathLike[str]) -> Path:
    """Where a pod unpacks layers when no work dir is given: beside a directory store, else in the
    user's data folder (``~/.local/share/dormant/work``)."""
    try:
        registry = is_registry(layer_store)
    except ValueError:
        registry = True  # refused with its reason at the first fetch
    return (default_layer_store() if registry else Path(layer_store)).parent / "work"


def check_layer_store(layer_store: str | os.PathLike[str]) -> None:
    """``ValueError`` naming the setting when the store cannot work (a malformed registry location,
    half the credentials, an unreadable CA file, a bad cache bound), so a pod fails at start-up."""
    store = open_store(layer_store)
    close = getattr(store, "close", None)
    if close is not None:
        close()


_stores: dict[tuple[str, str, UnpackLimits], Store] = {}
_stores_lock = threading.Lock()


def _store(location: str | os.PathLike[str], work_dir: Path, limits: UnpackLimits | None) -> Store:
    effective = limits if limits is not None else UnpackLimits.from_env()
    key = (os.fspath(location), str(work_dir), effective)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            store = _stores[key] = open_store(location, limits=effective, cache_dir=work_dir / BLOB_CACHE_DIR)
        return store


def _fetch(
    store_root: str | os.PathLike[str],
    image: str,
    work_dir: Path,
    limits: UnpackLimits | None,
    cancel: threading.Event,
) -> Path:
    try:
        store = _store(store_root, work_dir, limits)
        resolved = store.resolve(ImageRef.parse(image), cancel=cancel)
        dest = work_dir / "layers" / resolved.layer_digest.removeprefix("sha256:")
        return store.unpack(resolved, dest, cancel=cancel)
    except (LayerStoreError, ValueError, OSError) as exc:
        raise LayerFetchFailed(f"cannot fetch layer {image}: {exc}") from exc


async def fetch_layer(
    store_root: str | os.PathLike[str], image: str, work_dir: Path, limits: UnpackLimits | None = None
) -> Path:
    """Unpack ``image`` (``name@sha256:...``) to ``work_dir/layers/<layer digest hex>``; return the dir.

    ``store_root`` is the store's location (a directory, or ``oci://…``). Unpacking is atomic and a
    no-op when the same layer is already there; ``limits`` bound it (default:
    ``UnpackLimits.from_env()``)."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(_fetch, store_root, image, work_dir, limits, cancel)
    except asyncio.CancelledError:
        cancel.set()  # the thread stops at its next wait or chunk
        raise


IMPORT_ROOT = "python"
"""The folder of an extra layer that goes on the import path (``dormant_codegen.dependencies``)."""


def import_paths(layer_dir: Path) -> list[Path]:
    """The folders of an unpacked extra layer that go on the runtime's import path."""
    root = layer_dir / IMPORT_ROOT
    nested = root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    return [root, nested] if nested.is_dir() else [root]


async def fetch_extra_layers(
    store_root: str | os.PathLike[str],
    images: Sequence[str],
    work_dir: Path,
    limits: UnpackLimits | None = None,
) -> list[Path]:
    """Unpack each of ``images`` like ``fetch_layer``; their import paths, in the order given."""
    paths: list[Path] = []
    for image in images:
        paths += import_paths(await fetch_layer(store_root, image, work_dir, limits))
    return paths
