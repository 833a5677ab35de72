"""Fetch a claimed version's app layer: resolve its digest, verify it and unpack it (in a thread)."""

from __future__ import annotations

import asyncio
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
