"""Fixtures for end-to-end tests: ``mesh``, a real mesh on the session broker and a fresh catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dormant_local import MosquittoProcess

from .mesh import Mesh, running_mesh


@pytest.fixture
def mesh(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> Iterator[Mesh]:
    with running_mesh(broker.url, catalog_url, tmp_path) as m:
        yield m
