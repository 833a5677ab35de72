"""Conformance: the conformance service's implementations share one interface.

Every runtime's build of the conformance service carries the same schemas file, byte for byte (the
Python service's is the original), so the same black-box tests mean the same thing for each.
"""

from __future__ import annotations

import pytest

from .harness import PYTHON_APP, RUNTIMES, selected_runtimes

SCHEMAS = "schemas/conformance.json"


@pytest.mark.parametrize(
    "name", [name for name in selected_runtimes() if RUNTIMES[name].app_dir != PYTHON_APP]
)
def test_each_service_carries_the_same_schemas(name: str) -> None:
    copy = RUNTIMES[name].app_dir / SCHEMAS
    if not copy.exists():
        pytest.fail(f"{copy} does not exist (the {name} conformance service is missing)", pytrace=False)
    assert copy.read_bytes() == (PYTHON_APP / SCHEMAS).read_bytes()
