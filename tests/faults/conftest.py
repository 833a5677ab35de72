"""Fixtures for delivery fault tests: ``ledger``, a mesh serving ledger-service on the session broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.mesh import running_mesh

from dormant_local import MosquittoProcess

from .ledger import Ledger


@pytest.fixture
def ledger(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> Iterator[Ledger]:
    with running_mesh(broker.url, catalog_url, tmp_path) as mesh:
        yield Ledger(mesh, tmp_path / "runs.txt")
