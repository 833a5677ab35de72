"""A pod of Dormant's pod image claims exactly what it provides: the base runtime and platform interface
its image records (``dev.dormant.base-runtime``, ``dev.dormant.platform-interface``) are the ones services
are published with, and a version that needs another platform interface stays unclaimed with the reason."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from dormant_catalog import Catalog
from dormant_codegen import images
from dormant_codegen.constants import BASE_RUNTIME, PLATFORM_INTERFACE

Register = Callable[..., Awaitable[int]]
REPO = Path(__file__).resolve().parents[3]


async def test_a_pod_claims_only_what_its_image_provides(catalog: Catalog, register: Register) -> None:
    labels = images.labels_of(images.POD, images.read_project(REPO))
    bases = [labels[images.LABEL_BASE_RUNTIME]]
    interfaces = [labels[images.LABEL_PLATFORM_INTERFACE]]
    # As `dormant publish` registers a version (dormant_codegen.publish), and one built for a newer
    # platform interface than this image's.
    await register(catalog, "today", base_image=BASE_RUNTIME, platform_interface=PLATFORM_INTERFACE)
    await register(catalog, "tomorrow", base_image=BASE_RUNTIME, platform_interface="dormant/2")
    await catalog.deploy("today", replicas=1)
    await catalog.deploy("tomorrow", replicas=1)
    await catalog.register_pod("image-pod", bases, interfaces)

    got = await catalog.claim_slot("image-pod", base_images=bases, platform_interfaces=interfaces, lease_s=30)
    assert got is not None and got.app_name == "today"
    assert (got.base_image, got.platform_interface) == (BASE_RUNTIME, PLATFORM_INTERFACE)
    await catalog.register_pod("image-pod-2", bases, interfaces)
    assert (
        await catalog.claim_slot("image-pod-2", base_images=bases, platform_interfaces=interfaces, lease_s=30)
        is None
    )
    status = await catalog.deployment_status("tomorrow")
    assert status.state == "pending"
    assert status.reason == (
        f"no registered pod provides platform interface dormant/2 with base runtime {BASE_RUNTIME}"
    )
    # A pod of an image that provides both takes it.
    both = [*interfaces, "dormant/2"]
    await catalog.register_pod("newer-pod", bases, both)
    newer = await catalog.claim_slot("newer-pod", base_images=bases, platform_interfaces=both, lease_s=30)
    assert newer is not None and newer.app_name == "tomorrow"
