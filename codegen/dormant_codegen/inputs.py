"""Which files of a service directory are codegen inputs, and the ``sourceHash`` over them.

Kept free of heavy imports: the no-op path of ``generate`` runs only this, a stamp read and a few
digests, so it stays well under 200 ms.
"""

from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from .constants import CODEGEN_VERSION, GENERATED_DIR, SCHEMAS_DIR

SKIPPED_DIRS = frozenset({GENERATED_DIR, "tests", "__pycache__", "node_modules"})


def _skip_dir(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_DIRS


def python_sources(service_dir: Path) -> list[str]:
    """User modules as sorted POSIX paths relative to ``service_dir``.

    Skips ``generated/``, ``tests/``, hidden directories, ``__pycache__`` and virtualenvs.
    """
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(service_dir):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not _skip_dir(d) and not (here / d / "pyvenv.cfg").exists()]
        rel = here.relative_to(service_dir)
        found.extend((rel / f).as_posix() for f in filenames if f.endswith(".py") and not f.startswith("."))
    return sorted(found)


def schema_sources(service_dir: Path) -> list[str]:
    """``schemas/*.json`` as sorted relative POSIX paths."""
    folder = service_dir / SCHEMAS_DIR
    if not folder.is_dir():
        return []
    return sorted(f"{SCHEMAS_DIR}/{p.name}" for p in folder.iterdir() if p.suffix == ".json" and p.is_file())


@lru_cache(maxsize=1)
def codegen_fingerprint() -> str:
    """Digest of this generator: its version, its own sources and templates, and the model generator's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        dmcg = version("datamodel-code-generator")
    except PackageNotFoundError:
        dmcg = "absent"
    h = hashlib.sha256(f"dormant-codegen {CODEGEN_VERSION}\0datamodel-code-generator {dmcg}\0".encode())
    package = Path(__file__).parent
    for path in sorted(p for p in package.rglob("*") if p.is_file() and p.suffix in (".py", ".j2")):
        h.update(path.relative_to(package).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def source_hash(service_dir: Path) -> str:
    """``sha256:<hex>`` over every input file (relative path + bytes) and the generator fingerprint.

    Relative paths only: a copy of the service at another place hashes the same.
    """
    h = hashlib.sha256(b"dormant-source-hash/1\0" + codegen_fingerprint().encode() + b"\0")
    for rel in [*python_sources(service_dir), *schema_sources(service_dir)]:
        data = (service_dir / rel).read_bytes()
        h.update(f"{rel}\0{len(data)}\0".encode())
        h.update(data)
    return "sha256:" + h.hexdigest()
