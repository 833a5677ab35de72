"""Fixtures for delivery fault tests: ``ledger``, a mesh serving ledger-service on the session broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e.mesh import running_mesh

from dormant_local import MosquittoProcess

from .ledger import Ledger


@pytest.fixture(scope="package", autouse=True)
def _children_unmeasured() -> Iterator[None]:
    """The fault tests' pods and runtimes run without line coverage.

    They load and kill runtimes thousands of times over code the other tests already cover, and
    coverage in every child process costs a third more CPU there; without ``COVERAGE_PROCESS_CONFIG``
    in their environment the children run untraced (this process is still measured)."""
    saved = os.environ.pop("COVERAGE_PROCESS_CONFIG", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["COVERAGE_PROCESS_CONFIG"] = saved


@pytest.fixture
def ledger(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> Iterator[Ledger]:
    with running_mesh(broker.url, catalog_url, tmp_path) as mesh:
        yield Ledger(mesh, tmp_path / "runs.txt")
