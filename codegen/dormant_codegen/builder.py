"""``build``: generate (a no-op when fresh), check that it imports, pack the layer, push it to a store."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dormant_layers import ImageRef, LayerStore

from .constants import GENERATED_DIR
from .generator import generate
from .importcheck import check_import
from .pack import pack_layer

ANNOTATION_PREFIX = "io.dormant"


@dataclass(frozen=True, slots=True)
class BuildResult:
    """The pushed image, the service interface (``interface.json``) and the layer's size in bytes."""

    ref: ImageRef
    interface: dict[str, Any]
    layer_size: int


def app_manifest(interface: dict[str, Any]) -> dict[str, Any]:
    """The layer's root ``dormant-app.json``."""
    return {
        "service": interface["service"],
        "interfaceHash": interface["interfaceHash"],
        "baseRuntime": interface["baseRuntime"],
        "platformInterface": interface["platformInterface"],
        "functions": sorted(interface["functions"]),
    }


def build(service_dir: Path, store: LayerStore, *, import_check: bool = False) -> BuildResult:
    """Generate, pack and push ``service_dir``; the same inputs always give the same digests.

    With ``import_check`` the service is first imported as a runtime would (``importcheck``; cached
    while nothing changes), so a module that cannot be imported fails here. It runs the service's
    code, so it is for the author's own machine (the CLI), not for a server building uploaded code.
    """
    service_dir = Path(service_dir)
    generate(service_dir)
    if import_check:
        check_import(service_dir)
    interface = json.loads((service_dir / GENERATED_DIR / "interface.json").read_text(encoding="utf-8"))
    layer = pack_layer(service_dir, app_manifest(interface))
    ref = store.push(
        interface["service"],
        layer,
        annotations={
            f"{ANNOTATION_PREFIX}.interface-hash": interface["interfaceHash"],
            f"{ANNOTATION_PREFIX}.base-runtime": interface["baseRuntime"],
            f"{ANNOTATION_PREFIX}.platform-interface": interface["platformInterface"],
        },
    )
    return BuildResult(ref=ref, interface=interface, layer_size=len(layer))
