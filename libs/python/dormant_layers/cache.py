"""A bounded, content-addressed cache of verified blobs pulled from a registry (manifests and layers).

A blob enters only after its bytes hashed to its digest (``commit`` of a finished download), so the
cache never holds a wrong blob under a digest; a blob found corrupt later (the disk) is ``discard``ed.
Its size is bounded (``DORMANT_LAYER_CACHE_MAX_BYTES``, default 2 GiB): after every commit the least
recently used blobs are removed until the total fits. Use is the file's mtime, set on every hit, so
processes sharing the directory (pods on one node) share the order too. Downloads in progress are temp
files in the same directory (renamed into place, never copied); ones left by a crashed process are
removed once they are an hour old. A blob larger than the whole bound is kept only while it is used.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from .oci import check_digest

MAX_BYTES_ENV = "DORMANT_LAYER_CACHE_MAX_BYTES"
DIR_ENV = "DORMANT_LAYER_CACHE_DIR"
GiB = 1024 * 1024 * 1024
DEFAULT_MAX_BYTES = 2 * GiB
STALE_TEMP_S = 3600.0
_TEMP_PREFIX = ".download-"


def default_cache_dir() -> Path:
    """``$DORMANT_LAYER_CACHE_DIR``, else ``$XDG_CACHE_HOME/dormant/blobs`` (``~/.cache/dormant/blobs``)."""
    configured = os.environ.get(DIR_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dormant" / "blobs"


def max_bytes_from_env() -> int:
    raw = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    if not re.fullmatch(r"[0-9]{1,18}", raw, re.ASCII) or int(raw) < 1:
        raise ValueError(f"{MAX_BYTES_ENV} must be a positive integer in digits 0-9, not {raw!r}")
    return int(raw)


class BlobCache:
    """Verified blobs under ``root/sha256/<hex>``, at most ``max_bytes`` of them together."""

    def __init__(self, root: Path, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes if max_bytes is not None else max_bytes_from_env()
        if self.max_bytes < 1:
            raise ValueError("a blob cache holds at least one byte")

    @property
    def _dir(self) -> Path:
        return self.root / "sha256"

    def path(self, digest: str) -> Path:
        return self._dir / check_digest(digest).removeprefix("sha256:")

    def get(self, digest: str) -> Path | None:
        """The cached blob's path, marked as just used; None when it is not cached."""
        path = self.path(digest)
        try:
            os.utime(path)
        except FileNotFoundError:
            return None
        return path

    def temp_file(self) -> Path:
        """A new empty file in the cache directory to download into (``commit`` or unlink it)."""
        self._dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self._dir, prefix=_TEMP_PREFIX)
        os.close(fd)
        return Path(name)

    def commit(self, temp: Path, digest: str) -> Path:
        """Move the verified download ``temp`` into place as ``digest``; then trim, keeping it."""
        path = self.path(digest)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
        os.utime(path)
        self.trim(keep=(digest,))
        return path

    def put(self, digest: str, data: bytes) -> Path:
        """Cache ``data`` (already verified to hash to ``digest``)."""
        temp = self.temp_file()
        try:
            temp.write_bytes(data)
            return self.commit(temp, digest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            raise

    def discard(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def entries(self) -> list[tuple[str, int, float]]:
        """(digest, size, last use) of every cached blob, least recently used first."""
        found = []
        try:
            listing = list(os.scandir(self._dir))
        except FileNotFoundError:
            return []
        for entry in listing:
            if entry.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError):
                info = entry.stat()
                found.append((f"sha256:{entry.name}", info.st_size, info.st_mtime))
        return sorted(found, key=lambda item: (item[2], item[0]))

    def size(self) -> int:
        return sum(size for _, size, _ in self.entries())

    def trim(self, keep: Iterable[str] = ()) -> list[str]:
        """Remove least recently used blobs (never those in ``keep``) until the total fits; removes stale
        temp files too. Returns the digests removed."""
        kept = set(keep)
        entries = self.entries()
        total = sum(size for _, size, _ in entries)
        removed = []
        for digest, size, _ in entries:
            if total <= self.max_bytes:
                break
            if digest in kept:
                continue
            self.discard(digest)
            total -= size
            removed.append(digest)
        self._remove_stale_temps()
        return removed

    def release(self, digest: str) -> None:
        """Done using ``digest``: drop it if it alone is more than the bound (it was kept only for use)."""
        path = self.path(digest)
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_size > self.max_bytes:
                path.unlink()

    def _remove_stale_temps(self) -> None:
        cutoff = time.time() - STALE_TEMP_S
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(self._dir):
                if entry.name.startswith(_TEMP_PREFIX):
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat().st_mtime < cutoff:
                            os.unlink(entry.path)
