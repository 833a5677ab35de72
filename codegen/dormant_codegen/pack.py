"""Packing a service directory into a deterministic app layer (gzip tar).

Entries are sorted, with mtime 0, uid/gid 0, empty owner names, mode 0644 for files and 0755 for
directories; gzip carries mtime 0 and no file name. So the same files give the same bytes wherever the
directory lives. Skipped: hidden files and dirs, ``__pycache__``, ``*.pyc``, ``tests/``, virtualenvs.
A root entry ``dormant-app.json`` describes the app.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path
from typing import Any

from .diagnostics import CodegenError, Diagnostic
from .interface import dump_json

APP_MANIFEST = "dormant-app.json"
_SKIPPED_DIRS = frozenset({"__pycache__", "tests", "node_modules"})
_SKIPPED_SUFFIXES = (".pyc", ".pyo")


def layer_files(service_dir: Path) -> list[str]:
    """Files that go into the layer, as sorted POSIX paths relative to ``service_dir``."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(service_dir):
        here = Path(dirpath)
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".")
            and d not in _SKIPPED_DIRS
            and not (here / d).is_symlink()
            and not (here / d / "pyvenv.cfg").exists()
        ]
        rel = here.relative_to(service_dir)
        for name in filenames:
            if name.startswith(".") or name.endswith(_SKIPPED_SUFFIXES) or not (here / name).is_file():
                continue
            found.append((rel / name).as_posix())
    return sorted(found)


def _info(name: str, *, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if directory else 0o644
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    return info


def pack_layer(service_dir: Path, app_manifest: dict[str, Any]) -> bytes:
    """The gzip tar of the service's files plus ``dormant-app.json`` made from ``app_manifest``."""
    service_dir = Path(service_dir)
    files = layer_files(service_dir)
    if APP_MANIFEST in files:
        raise CodegenError(
            [Diagnostic(f"{service_dir}/{APP_MANIFEST}", 1, 1, f"{APP_MANIFEST} is reserved for the build")]
        )
    contents: dict[str, bytes] = {APP_MANIFEST: dump_json(app_manifest)}
    for rel in files:
        contents[rel] = (service_dir / rel).read_bytes()
    return pack_files(contents)


def pack_files(files: dict[str, bytes]) -> bytes:
    """The deterministic gzip tar of ``files`` (POSIX path -> content), with their parent directories."""
    contents: dict[str, bytes | None] = {}
    for rel, content in files.items():
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            contents.setdefault("/".join(parts[:depth]), None)
        contents[rel] = content
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(contents):
            data = contents[name]
            if data is None:
                tar.addfile(_info(name, directory=True))
            else:
                tar.addfile(_info(name, size=len(data)), io.BytesIO(data))
    return gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
