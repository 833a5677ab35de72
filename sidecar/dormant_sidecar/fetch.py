"""Fetch a claimed version's layers: resolve each digest, verify it and unpack it (in a thread).

Besides the app layer, a claim lists extra layers (the version's dependency layer, then the function's
attached layers): each unpacks to its own folder by layer digest (shared by every version that uses
it), and its ``python/`` folder (plus ``python/lib/pythonX.Y/site-packages`` when it has one, the seed's
layout) is what the runtime puts on its import path, in the claim's order.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from dormant_layers import ImageRef, LayerStore, LayerStoreError, UnpackLimits


class LayerFetchFailed(Exception):
    """The layer could not be found, verified or unpacked; the message says why."""


def _fetch(store_root: Path, image: str, layers_dir: Path, limits: UnpackLimits | None) -> Path:
    store = LayerStore(store_root, limits=limits)
    try:
        resolved = store.resolve(ImageRef.parse(image))
        dest = layers_dir / resolved.layer_digest.removeprefix("sha256:")
        return store.unpack(resolved, dest)
    except (LayerStoreError, ValueError, OSError) as exc:
        raise LayerFetchFailed(f"cannot fetch layer {image}: {exc}") from exc


async def fetch_layer(
    store_root: Path, image: str, work_dir: Path, limits: UnpackLimits | None = None
) -> Path:
    """Unpack ``image`` (``name@sha256:...``) to ``work_dir/layers/<layer digest hex>``; return the dir.

    Unpacking is atomic and a no-op when the same layer is already there; ``limits`` bound it (default:
    ``UnpackLimits.from_env()``).
    """
    return await asyncio.to_thread(_fetch, store_root, image, work_dir / "layers", limits)


IMPORT_ROOT = "python"
"""The folder of an extra layer that goes on the import path (``dormant_codegen.dependencies``)."""


def import_paths(layer_dir: Path) -> list[Path]:
    """The folders of an unpacked extra layer that go on the runtime's import path."""
    root = layer_dir / IMPORT_ROOT
    nested = root / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    return [root, nested] if nested.is_dir() else [root]


async def fetch_extra_layers(
    store_root: Path, images: Sequence[str], work_dir: Path, limits: UnpackLimits | None = None
) -> list[Path]:
    """Unpack each of ``images`` like ``fetch_layer``; their import paths, in the order given."""
    paths: list[Path] = []
    for image in images:
        paths += import_paths(await fetch_layer(store_root, image, work_dir, limits))
    return paths
