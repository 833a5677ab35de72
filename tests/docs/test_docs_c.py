"""Share 2 of the documents that run as written (see ``test_docs.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .blocks import display
from .test_docs import SESSION_TIMEOUT_S, run_document, share


@pytest.mark.slow
@pytest.mark.timeout(SESSION_TIMEOUT_S + 120)
@pytest.mark.parametrize("document", share(2), ids=display)
async def test_document_runs_as_written(document: Path) -> None:
    await run_document(document)
