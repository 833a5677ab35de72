"""Layers beside a version's app layer: its dependency layer, shared layer versions, attachments.

* A version's *dependency layer* (``version_dependencies``) is resolved at build time from the
  service's requirements (``dormant_codegen.dependencies``) and registered with the version, in the
  same transaction; the image is named by the resolved lock, so versions with the same lock share it.
* A *layer version* (``layer_versions``) is an immutable, numbered image of shared code (FR-FN-009:
  ``dormant layer publish``, ``POST /api/v1/layers``); publishing the image the latest version of
  that layer already has returns that version.
* A function's *attached layers* (``function_layers``) are up to ``MAX_ATTACHED_LAYERS`` layer
  versions in order, unpacking to at most ``MAX_ATTACHED_BYTES`` together. Setting them is a new
  generation of every slot of the function (``environment.roll_generation``): each pod loads its
  version again, with the new import path, in a new process.

The slot claim (``pods._CLAIM_SELECT``) lists a version's extra images in the order the runtime puts
them on its import path: the dependency layer, then the attached layers in attach order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from .audit import record_audit
from .db import Conn
from .environment import roll_generation
from .errors import InvalidCatalogRequest, NotFoundInCatalog
from .names import check_app_name

MAX_ATTACHED_LAYERS = 5
MAX_ATTACHED_BYTES = 250 * 1024 * 1024
"""The seed's limit: the attached layers of one function unpack to at most 250 MB together."""
LAYER_NAME = re.compile(r"^[a-z][a-z0-9-]{0,63}$", re.ASCII)
LAYER_NAME_HINT = "lowercase letters, digits and dashes, starting with a letter (at most 64)"
# Second key of the per-layer advisory lock that serialises layer version numbering.
LAYER_LOCK_CLASS = 0x444C59  # "DLY"
_REFERENCE = re.compile(r"^(?P<name>[a-z][a-z0-9-]{0,63}):(?P<version>[1-9][0-9]{0,8})$", re.ASCII)


class LayerLimitExceeded(InvalidCatalogRequest):
    """Attaching would pass a limit: more than ``MAX_ATTACHED_LAYERS`` layers or ``MAX_ATTACHED_BYTES``."""

    def __init__(self, message: str, *, limit: str) -> None:
        self.limit = limit
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class LayerVersionRecord:
    name: str
    version: int
    layer_image: str
    unpacked_bytes: int
    description: str
    created_at: datetime
    created_by: str

    @property
    def reference(self) -> str:
        return f"{self.name}:{self.version}"


def check_layer_name(name: str) -> str:
    if not isinstance(name, str) or not LAYER_NAME.fullmatch(name):
        raise InvalidCatalogRequest(f"invalid layer name {name!r}: {LAYER_NAME_HINT}")
    return name


def parse_reference(text: str) -> tuple[str, int]:
    """``name:version`` as (name, version); ``InvalidCatalogRequest`` for any other shape."""
    match = _REFERENCE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidCatalogRequest(f"invalid layer reference {text!r}: expected name:version (e.g. utils:2)")
    return match["name"], int(match["version"])


# ---- dependency layers -------------------------------------------------------------------------------


async def record_dependency_layer(
    conn: Conn, app_name: str, version: int, *, layer_image: str, lock_digest: str, lock: dict[str, Any]
) -> None:
    """Register the dependency layer of a newly registered version (same transaction)."""
    await conn.execute(
        "INSERT INTO version_dependencies (app_name, version, layer_image, lock_digest, lock)"
        " VALUES (%s, %s, %s, %s, %s)",
        (app_name, version, layer_image, lock_digest, Jsonb(lock)),
    )


async def dependency_layer(conn: Conn, app_name: str, version: int) -> tuple[str, str] | None:
    """(image, lock digest) of the version's dependency layer; None when it has none."""
    cur = await conn.execute(
        "SELECT layer_image, lock_digest FROM version_dependencies WHERE app_name = %s AND version = %s",
        (app_name, version),
    )
    row = await cur.fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


# ---- layer versions ----------------------------------------------------------------------------------

_COLUMNS = "name, version, layer_image, unpacked_bytes, description, created_at, created_by"


async def publish_layer_version(
    conn: Conn,
    name: str,
    *,
    layer_image: str,
    unpacked_bytes: int,
    description: str = "",
    actor: str,
) -> tuple[LayerVersionRecord, bool]:
    """(the layer version, whether it is new): the latest version of ``name`` when it has this image
    already, else the next version. Call inside a transaction."""
    check_layer_name(name)
    if unpacked_bytes > MAX_ATTACHED_BYTES:
        raise LayerLimitExceeded(
            f"layer {name} unpacks to {unpacked_bytes} bytes: a function's layers hold at most"
            f" {MAX_ATTACHED_BYTES} bytes (250 MB) together",
            limit="bytes",
        )
    await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LAYER_LOCK_CLASS, name))
    latest = await _latest(conn, name)
    if latest is not None and latest.layer_image == layer_image:
        return latest, False
    cur = conn.cursor(row_factory=class_row(LayerVersionRecord))
    await cur.execute(
        "INSERT INTO layer_versions (name, version, layer_image, unpacked_bytes, description, created_by)"
        " SELECT %(name)s, COALESCE(MAX(version), 0) + 1, %(image)s, %(size)s, %(desc)s, %(actor)s"
        f" FROM layer_versions WHERE name = %(name)s RETURNING {_COLUMNS}",
        {"name": name, "image": layer_image, "size": unpacked_bytes, "desc": description, "actor": actor},
    )
    record = await cur.fetchone()
    assert record is not None
    await record_audit(
        conn,
        actor=actor,
        app_name=None,
        action="publish-layer",
        detail={"layer": name, "version": record.version, "image": layer_image, "bytes": unpacked_bytes},
    )
    return record, True


async def _latest(conn: Conn, name: str) -> LayerVersionRecord | None:
    cur = conn.cursor(row_factory=class_row(LayerVersionRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM layer_versions WHERE name = %s ORDER BY version DESC LIMIT 1", (name,)
    )
    return await cur.fetchone()


async def get_layer_version(conn: Conn, name: str, version: int) -> LayerVersionRecord | None:
    cur = conn.cursor(row_factory=class_row(LayerVersionRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM layer_versions WHERE name = %s AND version = %s", (name, version)
    )
    return await cur.fetchone()


async def list_layer_versions(conn: Conn, name: str | None = None) -> list[LayerVersionRecord]:
    """Every layer version (of ``name``, or of all layers), by name and version."""
    cur = conn.cursor(row_factory=class_row(LayerVersionRecord))
    await cur.execute(
        f"SELECT {_COLUMNS} FROM layer_versions WHERE %(name)s::text IS NULL OR name = %(name)s"
        " ORDER BY name, version",
        {"name": name},
    )
    return await cur.fetchall()


# ---- attachments -------------------------------------------------------------------------------------


async def attached_layers(conn: Conn, app_name: str) -> list[LayerVersionRecord]:
    """The layer versions attached to ``app_name``, in attach order."""
    cur = conn.cursor(row_factory=class_row(LayerVersionRecord))
    await cur.execute(
        "SELECT v.name, v.version, v.layer_image, v.unpacked_bytes, v.description, v.created_at,"
        " v.created_by FROM function_layers AS a"
        " JOIN layer_versions AS v ON v.name = a.layer_name AND v.version = a.layer_version"
        " WHERE a.app_name = %s ORDER BY a.position",
        (app_name,),
    )
    return await cur.fetchall()


async def attach_layers(
    conn: Conn, app_name: str, references: Sequence[str], *, actor: str
) -> tuple[list[LayerVersionRecord], int]:
    """Attach ``references`` (``name:version``, in order; empty detaches all) to ``app_name`` in place of
    what was attached; (the attached layers, the number of slots rolled). Call inside a transaction.

    Refused: an unknown service or layer version (``NotFoundInCatalog``), a layer named twice
    (``InvalidCatalogRequest``), more than 5 layers or 250 MB together (``LayerLimitExceeded``)."""
    check_app_name(app_name)
    if len(references) > MAX_ATTACHED_LAYERS:
        raise LayerLimitExceeded(
            f"{len(references)} layers: a function has at most {MAX_ATTACHED_LAYERS} layers attached",
            limit="count",
        )
    parsed = [parse_reference(ref) for ref in references]
    names = [name for name, _ in parsed]
    if len(set(names)) != len(names):
        raise InvalidCatalogRequest("a layer can be attached once: name each layer one time")
    cur = await conn.execute("SELECT 1 FROM application_catalog WHERE app_name = %s LIMIT 1", (app_name,))
    if await cur.fetchone() is None:
        raise NotFoundInCatalog(f"no function {app_name!r}: publish a version first")
    records = []
    for name, version in parsed:
        record = await get_layer_version(conn, name, version)
        if record is None:
            raise NotFoundInCatalog(f"layer {name} has no version {version}")
        records.append(record)
    total = sum(r.unpacked_bytes for r in records)
    if total > MAX_ATTACHED_BYTES:
        raise LayerLimitExceeded(
            f"the layers unpack to {total} bytes together: at most {MAX_ATTACHED_BYTES} bytes (250 MB)",
            limit="bytes",
        )
    # Serialise attachments of one function (two concurrent PUTs must not interleave their rows).
    await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (LAYER_LOCK_CLASS, "fn:" + app_name))
    before = [r.reference for r in await attached_layers(conn, app_name)]
    after = [r.reference for r in records]
    if before == after:
        return records, 0
    await conn.execute("DELETE FROM function_layers WHERE app_name = %s", (app_name,))
    for position, (name, version) in enumerate(parsed, start=1):
        await conn.execute(
            "INSERT INTO function_layers (app_name, position, layer_name, layer_version)"
            " VALUES (%s, %s, %s, %s)",
            (app_name, position, name, version),
        )
    # The layers reach runtimes with their slot: a new generation reloads every replica.
    rolled = await roll_generation(conn, app_name)
    await record_audit(
        conn,
        actor=actor,
        app_name=app_name,
        action="attach-layers",
        detail={"before": before, "layers": after, "slotsRolled": rolled},
    )
    return records, rolled
