"""``build``: generate (a no-op when fresh), resolve the dependency layer, check that it imports, pack the
layer, push it to a store."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dormant_layers import ImageRef, Store

from .constants import GENERATED_DIR
from .dependencies import IMPORT_ROOT, DependencyLayer, resolve_dependencies
from .generator import generate
from .importcheck import check_import
from .pack import pack_layer

ANNOTATION_PREFIX = "io.dormant"


@dataclass(frozen=True, slots=True)
class BuildResult:
    """The pushed image, the service interface (``interface.json``) and the layer's size in bytes;
    ``dependencies``: the service's dependency layer (``dependencies.py``), None when it declares none."""

    ref: ImageRef
    interface: dict[str, Any]
    layer_size: int
    dependencies: DependencyLayer | None = None


def app_manifest(interface: dict[str, Any], dependency_lock: str | None = None) -> dict[str, Any]:
    """The layer's root ``dormant-app.json``; ``dependency_lock`` (the digest of the resolved
    dependencies) makes a new resolution of the same code a new image, so a new version."""
    manifest = {
        "service": interface["service"],
        "interfaceHash": interface["interfaceHash"],
        "baseRuntime": interface["baseRuntime"],
        "platformInterface": interface["platformInterface"],
        "functions": sorted(interface["functions"]),
    }
    if dependency_lock is not None:
        manifest["dependencyLock"] = dependency_lock
    return manifest


def build(service_dir: Path, store: Store, *, import_check: bool = False) -> BuildResult:
    """Generate, pack and push ``service_dir`` to ``store`` (a directory or a registry: ``dormant_layers``);
    the same inputs always give the same digests.

    With ``import_check`` the service is first imported as a runtime would (``importcheck``; cached
    while nothing changes), so a module that cannot be imported fails here. It runs the service's
    code, so it is for the author's own machine (the CLI), not for a server building uploaded code.
    """
    service_dir = Path(service_dir)
    from .node import is_node_service  # lazy: start-up time

    if is_node_service(service_dir):  # a TypeScript service: compiled by tsc, loaded by node to check it
        from .node.compile import build_node  # lazy: start-up time

        return build_node(service_dir, store, import_check=import_check)
    generate(service_dir)
    dependencies = resolve_dependencies(service_dir, store)
    if import_check:
        if dependencies is None:
            check_import(service_dir)
        else:
            # The runtime imports the dependency layer, not this environment: so does the check.
            with tempfile.TemporaryDirectory(prefix="dormant-deps-check-") as tmp:
                unpacked = store.unpack(dependencies.image, Path(tmp) / "deps")
                check_import(
                    service_dir, extra_paths=[unpacked / IMPORT_ROOT], key_extra=dependencies.lock.digest
                )
    interface = json.loads((service_dir / GENERATED_DIR / "interface.json").read_text(encoding="utf-8"))
    lock = None if dependencies is None else dependencies.lock.digest
    layer = pack_layer(service_dir, app_manifest(interface, lock))
    ref = store.push(
        interface["service"],
        layer,
        annotations={
            f"{ANNOTATION_PREFIX}.interface-hash": interface["interfaceHash"],
            f"{ANNOTATION_PREFIX}.base-runtime": interface["baseRuntime"],
            f"{ANNOTATION_PREFIX}.platform-interface": interface["platformInterface"],
        },
    )
    return BuildResult(ref=ref, interface=interface, layer_size=len(layer), dependencies=dependencies)
