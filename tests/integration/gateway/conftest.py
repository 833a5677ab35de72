"""Gateway test fixtures: one mesh (example and probe services on two pods) and one gateway per module.

``gw_db``: a private catalog database per module; ``gw_mesh``: the mesh serving ``user-service`` and
``probe-service``, with a controller publishing their route tables; ``gateway``: a gateway process on
that mesh with its own dev key; ``rabbitmq``: a private RabbitMQ node (``dormant_local.RabbitNode``).
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from gw_helpers import EXAMPLE, PROBE, ROOT, GatewayProcess, new_gateway

from dormant_local import ExternalPostgres, LocalPostgres, MosquittoProcess, RabbitNode

if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))

from e2e.mesh import Mesh, caller_token


@pytest.fixture(scope="module")
def gw_tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dormant-gw-test-") as tmp:
        yield Path(tmp)


@pytest_asyncio.fixture(scope="module")
async def gw_db(pg: LocalPostgres | ExternalPostgres) -> AsyncIterator[str]:
    name = f"dormant_gw_{uuid.uuid4().hex[:12]}"
    url = await pg.create_database(name, exist_ok=False)
    try:
        yield url
    finally:
        await pg.drop_database(name)


@pytest_asyncio.fixture(scope="module")
async def gw_mesh(broker: MosquittoProcess, gw_db: str, gw_tmp: Path) -> AsyncIterator[Mesh]:
    mesh = Mesh(broker.url, gw_db, gw_tmp / "layers", gw_tmp / "pods")
    mesh.work_root.mkdir(parents=True, exist_ok=True)
    token = caller_token(mesh.identity.token("tester"))
    token.__enter__()
    try:
        for service_dir in (EXAMPLE, PROBE):
            service, version = await mesh.publish(service_dir)
            await mesh.deploy(service, version, replicas=1)
        mesh.start_pod("gw-pod-1")
        mesh.start_pod("gw-pod-2")
        # The gateway picks versions from the route tables the controller publishes, as SDK clients do.
        mesh.start_controller()
        await mesh.wait_serving("user-service", timeout=120)
        await mesh.wait_serving("probe-service", timeout=120)
        yield mesh
    finally:
        mesh.stop()
        token.__exit__(None, None, None)


@pytest_asyncio.fixture(scope="module")
async def gateway(gw_mesh: Mesh, gw_tmp: Path) -> AsyncIterator[GatewayProcess]:
    process = new_gateway(gw_mesh, gw_tmp, "gw-1")
    try:
        await process.start()
        yield process
    finally:
        process.stop()


@pytest_asyncio.fixture(scope="module")
async def rabbitmq(gw_tmp: Path) -> AsyncIterator[RabbitNode]:
    node = RabbitNode(gw_tmp / "rabbitmq")
    await node.start()
    try:
        yield node
    finally:
        await node.stop()
