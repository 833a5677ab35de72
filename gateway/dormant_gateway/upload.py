"""Turning an uploaded ZIP of a service directory into a registered version.

The archive is unpacked into a temporary directory (refusing absolute paths, ``..`` and links), its
service directory found (the one holding ``schemas/``), code generated and the app layer built and
pushed to the layer store; then the version is registered, unless the latest version has the same
image (publishing unchanged code returns that version, like AWS Lambda's PublishVersion).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from dormant.errors import ValidationError
from dormant_catalog import Catalog

MAX_ZIP_BYTES = 50 * 1024 * 1024
MAX_UNPACKED_BYTES = 250 * 1024 * 1024


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


def _build(data: bytes, layer_store: Path) -> tuple[Any, str]:
    from dormant.layers import LayerStore
    from dormant_codegen import CodegenError, build, generate

    with tempfile.TemporaryDirectory(prefix="dormant-upload-") as tmp:
        service_dir = unpack(data, Path(tmp))
        try:
            generate(service_dir)
            result = build(service_dir, LayerStore(layer_store))
        except CodegenError as exc:
            raise ValidationError(
                "the service does not build",
                {"errors": [{"path": "", "message": str(d)} for d in exc.diagnostics]},
            ) from None
        return result.interface, str(result.ref)


async def publish_zip(
    data: bytes, *, name: str, catalog: Catalog, layer_store: Path, actor: str
) -> tuple[int, bool, str]:
    """Build and register; returns (version, whether it is new, sha256 of the upload)."""
    from dormant.cli.build_cmds import topic_mappings

    sha256 = hashlib.sha256(data).hexdigest()
    interface, image = await asyncio.to_thread(_build, data, layer_store)
    if interface.get("service") != name:
        raise ValidationError(
            f"the archive holds service {interface.get('service')!r}, not {name!r}",
            {"errors": [{"path": "/service", "message": "the @service name must match the function name"}]},
        )
    latest = await catalog.latest_version(name)
    if latest is not None:
        record = await catalog.get_version(name, latest)
        if record is not None and record.app_layer_image == image:
            return latest, False, sha256
    version = await catalog.register_version(
        app_name=name,
        app_layer_image=image,
        base_image=str(interface["baseRuntime"]),
        interface_hash=str(interface["interfaceHash"]),
        schema_definition=interface,
        topic_mappings=topic_mappings(name),
        actor=actor,
    )
    return version, True, sha256
