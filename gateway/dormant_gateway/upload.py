"""Turning an uploaded ZIP of a service directory into a registered version.

The archive is unpacked into a temporary directory (refusing absolute paths, ``..`` and links) and its
service directory found (the one holding ``schemas/``); then it is published as ``dormant publish``
publishes (``dormant_codegen.publish``), except that the uploaded code is never imported here: the
new version, or the latest one when its image is the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from dormant.errors import ValidationError
from dormant_catalog import Database
from dormant_codegen import CodegenError
from dormant_codegen.publish import WrongService, publish_version
from dormant_layers import open_store

MAX_ZIP_BYTES = 50 * 1024 * 1024
MAX_UNPACKED_BYTES = 250 * 1024 * 1024
SERVICE_NAME_MISMATCH = "the @service name must match the function name"


def unpack(data: bytes, dest: Path) -> Path:
    """Unpack the ZIP into ``dest`` and return the service directory inside it."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise ValidationError("the body is not a ZIP archive") from None
    total = 0
    with archive:
        for info in archive.infolist():
            path = PurePosixPath(info.filename)
            if path.is_absolute() or ".." in path.parts or "\\" in info.filename:
                raise ValidationError(f"unsafe path in the archive: {info.filename!r}")
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ValidationError(f"links are not allowed in the archive: {info.filename!r}")
            total += info.file_size
            if total > MAX_UNPACKED_BYTES:
                raise ValidationError("the archive unpacks to more than 250 MB")
            target = dest.joinpath(*path.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as out:
                out.write(source.read())
    candidates = sorted({p.parent for p in dest.rglob("schemas") if p.is_dir()}, key=lambda p: len(p.parts))
    if not candidates:
        raise ValidationError("the archive holds no service directory (a directory with schemas/)")
    return candidates[0]


async def publish_zip(
    data: bytes, *, name: str, db: Database, layer_store: Path, actor: str
) -> tuple[int, bool, str]:
    """Build and register; returns (version, whether it is new, sha256 of the upload)."""
    sha256 = hashlib.sha256(data).hexdigest()
    with tempfile.TemporaryDirectory(prefix="dormant-upload-") as tmp:
        service_dir = await asyncio.to_thread(unpack, data, Path(tmp))
        try:
            published = await publish_version(
                service_dir, store=open_store(layer_store), db=db, actor=actor, service=name
            )
        except CodegenError as exc:
            raise ValidationError(
                "the service does not build",
                {"errors": [{"path": "", "message": str(d)} for d in exc.diagnostics]},
            ) from None
        except WrongService as exc:
            raise ValidationError(
                f"the archive holds service {exc.found!r}, not {name!r}",
                {"errors": [{"path": "/service", "message": SERVICE_NAME_MISMATCH}]},
            ) from None
    return published.version, published.created, sha256
