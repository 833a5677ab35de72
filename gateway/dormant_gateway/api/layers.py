"""Shared layers (FR-FN-009): publish a layer version from a ZIP, list them, attach them to a function.

``POST /api/v1/layers?name=N`` (or ``POST /api/v1/layers/{name}/versions``) takes a ZIP with the seed's
layout, a ``python/`` folder at its root (``python/lib/pythonX.Y/site-packages`` works too), and
registers the next immutable version of layer ``N`` (the latest one when its content is the same);
``GET /api/v1/layers`` and ``GET /api/v1/layers/{name}/versions`` list them. ``PUT
/api/v1/functions/{name}/layers`` with ``{"layers": ["utils:2", ...]}`` attaches up to 5 layer versions
in order (250 MB unpacked in all; beyond: 422 ``LayerLimitExceeded``): the function's runtimes import
from them in that order, after the service's own modules and its dependency layer, and every replica
reloads with them (a new generation, like an environment change).
"""

from __future__ import annotations

import asyncio
import io
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError
from dormant_catalog import InvalidCatalogRequest
from dormant_catalog import layers as layer_sql
from dormant_codegen.dependencies import push_shared_layer, tag_version
from dormant_layers import open_store

from ..auth import Action
from ..http_errors import HttpError
from ..upload import MAX_ZIP_BYTES
from .common import authorize, json_object, json_response, read_body, service_name, state

ZIP_TYPES = ("application/zip", "application/octet-stream", "application/x-zip-compressed")


def layer_view(record: layer_sql.LayerVersionRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "version": record.version,
        "reference": record.reference,
        "image": record.layer_image,
        "unpackedBytes": record.unpacked_bytes,
        "description": record.description,
        "createdAt": record.created_at.isoformat(),
        "createdBy": record.created_by,
    }


def _unzip(data: bytes, dest: Path) -> None:
    """Unpack a layer ZIP into ``dest``: plain files and folders only, at most 250 MB unpacked."""
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
            if total > layer_sql.MAX_ATTACHED_BYTES:
                raise HttpError(
                    422,
                    "LayerLimitExceeded",
                    f"the layer unpacks to more than {layer_sql.MAX_ATTACHED_BYTES} bytes (250 MB)",
                )
            target = dest.joinpath(*path.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, target.open("wb") as out:
                while chunk := source.read(1024 * 1024):
                    out.write(chunk)


def _build(data: bytes, name: str, store_root: Path) -> tuple[str, int]:
    with tempfile.TemporaryDirectory(prefix="dormant-layer-upload-") as tmp:
        folder = Path(tmp)
        _unzip(data, folder)
        try:
            return push_shared_layer(folder, name, open_store(store_root))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def _limit_error(exc: layer_sql.LayerLimitExceeded) -> HttpError:
    return HttpError(422, "LayerLimitExceeded", str(exc))


async def _publish(request: Request, name: str) -> Response:
    principal = await authorize(request, Action.UPLOAD_VERSION, limit="manage")
    try:
        layer_sql.check_layer_name(name)
    except InvalidCatalogRequest as exc:
        raise ValidationError(str(exc)) from None
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in ZIP_TYPES:
        raise HttpError(415, "UnsupportedMediaType", "upload the layer as application/zip")
    description = request.query_params.get("description", "")
    if len(description) > 1000 or "\0" in description:
        raise ValidationError("description: at most 1000 characters, no NUL")
    data = await read_body(request, MAX_ZIP_BYTES)
    gateway = state(request)
    image, size = await asyncio.to_thread(_build, data, name, gateway.config.layer_store)
    try:
        record, new = await gateway.db.run(
            layer_sql.publish_layer_version,
            name,
            layer_image=image,
            unpacked_bytes=size,
            description=description,
            actor=principal.sub,
        )
    except layer_sql.LayerLimitExceeded as exc:
        raise _limit_error(exc) from None
    await asyncio.to_thread(tag_version, open_store(gateway.config.layer_store), image, record.version)
    return json_response(
        {**layer_view(record), "created": new},
        status=201 if new else 200,
        headers={"Location": f"/api/v1/layers/{name}/versions/{record.version}"},
    )


async def create_layer(request: Request) -> Response:
    """``POST /api/v1/layers?name=N``: a ZIP body becomes the next version of layer ``N``."""
    name = request.query_params.get("name")
    if not name:
        await authorize(request, Action.UPLOAD_VERSION, limit="manage")
        raise ValidationError("name the layer: POST /api/v1/layers?name=<layer name>")
    return await _publish(request, name)


async def publish_version(request: Request) -> Response:
    """``POST /api/v1/layers/{name}/versions``: a ZIP body becomes the next version of the layer."""
    return await _publish(request, str(request.path_params["name"]))


async def list_layers(request: Request) -> Response:
    await authorize(request, Action.READ)
    records = await state(request).db.run(layer_sql.list_layer_versions)
    return json_response({"items": [layer_view(r) for r in records]})


async def list_versions(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = str(request.path_params["name"])
    records = await state(request).db.run(layer_sql.list_layer_versions, name)
    if not records:
        raise NotFound(f"no layer {name!r}")
    return json_response({"items": [layer_view(r) for r in records]})


async def get_function_layers(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    records = await state(request).db.run(layer_sql.attached_layers, name)
    return json_response({"function": name, "layers": [layer_view(r) for r in records]})


async def put_function_layers(request: Request) -> Response:
    """``PUT /api/v1/functions/{name}/layers`` ``{"layers": ["name:version", ...]}``: attach in order."""
    principal = await authorize(request, Action.SET_ENVIRONMENT, limit="manage")
    name = service_name(request)
    body = await json_object(request)
    references = body.get("layers")
    unknown = set(body) - {"layers"}
    if unknown:
        raise ValidationError(f"unknown fields: {', '.join(sorted(unknown))}")
    if not isinstance(references, list) or not all(isinstance(r, str) for r in references):
        raise ValidationError('layers must be a list of "name:version" strings')
    try:
        records, rolled = await state(request).db.run(
            layer_sql.attach_layers, name, references, actor=principal.sub
        )
    except layer_sql.LayerLimitExceeded as exc:
        raise _limit_error(exc) from None
    return json_response(
        {"function": name, "layers": [layer_view(r) for r in records], "slotsRolled": rolled}
    )
