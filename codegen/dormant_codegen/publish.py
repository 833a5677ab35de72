"""``publish_version``: a service directory to a registered version, the one publish path (``dormant
publish`` and the gateway's ZIP upload).

Build (generate, resolve the dependency layer, optionally import-check, pack, push the layer), then
register it in the catalog, unless the latest version has the same image: publishing unchanged code
returns that version (like AWS Lambda's PublishVersion). The check and the registration happen under
the catalog's numbering lock, so concurrent publishes of the same code register it once; a new
version's dependency layer is registered in the same transaction, so no pod sees the version without it,
and so is its interface verdict against the live version (``compat_catalog.record_new_version``: a
breaking version needs approval before it goes live).
Then the image is tagged ``v<version>`` in the store (for people and registry garbage collection: pods
pull by digest); publishing again tags again, so a tag that failed is repaired by the next publish.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from dormant import wire
from dormant_catalog import CompatibilityRecord, Database
from dormant_catalog.compatibility import get as get_compatibility
from dormant_catalog.layers import record_dependency_layer
from dormant_catalog.versions import publish_version as register_if_new
from dormant_layers import Store

from .builder import BuildResult, build
from .compat_catalog import record_new_version
from .dependencies import tag_version


@dataclass(frozen=True, slots=True)
class Published:
    service: str
    version: int
    created: bool
    """False when the latest version already had this image (nothing was registered)."""
    build: BuildResult
    compatibility: CompatibilityRecord | None = None
    """Its interface verdict (None for a version registered before verdicts were recorded)."""


class WrongService(ValueError):
    """The directory holds another service than the one it was published as."""

    def __init__(self, found: str, expected: str) -> None:
        self.found = found
        self.expected = expected
        super().__init__(f"the directory holds service {found!r}, not {expected!r}")


async def publish_version(
    service_dir: Path,
    *,
    store: Store,
    db: Database,
    actor: str,
    import_check: bool = False,
    service: str | None = None,
) -> Published:
    """Build ``service_dir`` into ``store`` and register it in the catalog ``db``.

    ``import_check`` imports the service first (it runs its code: for the author's machine, never for
    uploaded code). ``service``: refuse (``WrongService``) a directory holding another service.
    Raises ``CodegenError`` for a service that does not build.
    """
    result = await asyncio.to_thread(build, service_dir, store, import_check=import_check)
    return await register_build(result, db=db, actor=actor, service=service, store=store)


async def register_build(
    result: BuildResult,
    *,
    db: Database,
    actor: str,
    service: str | None = None,
    store: Store | None = None,
) -> Published:
    """Register a built service in the catalog ``db`` (the second half of ``publish_version``, for
    callers that build before they connect, so a service that does not build never waits on the
    database), then tag its image with the version in ``store`` (the one it was built into)."""
    interface = result.interface
    name = str(interface["service"])
    if service is not None and name != service:
        raise WrongService(name, service)
    async with db.transaction() as conn:
        version, created = await register_if_new(
            conn,
            app_name=name,
            app_layer_image=str(result.ref),
            base_image=str(interface["baseRuntime"]),
            platform_interface=str(interface["platformInterface"]),
            interface_hash=str(interface["interfaceHash"]),
            schema_definition=interface,
            topic_mappings=wire.topic_mappings(name),
            actor=actor,
        )
        deps = result.dependencies
        if created and deps is not None:
            await record_dependency_layer(
                conn,
                name,
                version,
                layer_image=deps.image,
                lock_digest=deps.lock.digest,
                lock=json.loads(deps.lock.canonical()),
            )
        if created:
            verdict: CompatibilityRecord | None = await record_new_version(conn, name, version, interface)
        else:
            verdict = await get_compatibility(conn, name, version)
    if store is not None:
        await asyncio.to_thread(tag_version, store, str(result.ref), version)
    return Published(name, version, created, result, verdict)
