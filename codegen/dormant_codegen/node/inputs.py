"""Which files of a Node service are codegen inputs, and its ``sourceHash``: light imports only, so the
no-op path of ``generate`` stays fast (as ``dormant_codegen.inputs`` does for Python services)."""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from ..inputs import codegen_fingerprint, schema_sources
from . import DIST_DIR, PACKAGE_FILE, SOURCE_DIR, TSCONFIG_FILE

_SKIPPED_DIRS = frozenset({"node_modules", DIST_DIR})


def typescript_sources(service_dir: Path) -> list[str]:
    """``src/**/*.ts`` (no ``*.d.ts``) as sorted POSIX paths relative to ``service_dir``."""
    root = Path(service_dir) / SOURCE_DIR
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in _SKIPPED_DIRS]
        here = Path(dirpath).relative_to(service_dir)
        found.extend(
            (here / f).as_posix()
            for f in filenames
            if f.endswith(".ts") and not f.endswith(".d.ts") and not f.startswith(".")
        )
    return sorted(found)


def node_inputs(service_dir: Path) -> list[str]:
    """Every codegen input of a Node service (what its ``sourceHash`` covers), sorted."""
    service_dir = Path(service_dir)
    fixed = [name for name in (PACKAGE_FILE, TSCONFIG_FILE) if (service_dir / name).is_file()]
    return [*fixed, *typescript_sources(service_dir), *schema_sources(service_dir)]


@lru_cache(maxsize=1)
def node_fingerprint() -> str:
    """The Python generator's fingerprint plus this package's non-Python files (the reader script)."""
    h = hashlib.sha256(b"dormant-node-codegen/1\0" + codegen_fingerprint().encode() + b"\0")
    package = Path(__file__).parent
    for path in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in (".js", ".json")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def node_source_hash(service_dir: Path) -> str:
    """``sha256:<hex>`` over every input of the Node service (relative path + bytes) and the generator."""
    h = hashlib.sha256(b"dormant-source-hash/1\0" + node_fingerprint().encode() + b"\0")
    for rel in node_inputs(service_dir):
        data = (Path(service_dir) / rel).read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return "sha256:" + h.hexdigest()
