"""The documents run as written: every shell block of README.md and docs/*.md, against a dev mesh.

One test per document, each in a fresh scratch copy of the repository with a fresh ``dormant dev``
(started only when the document has blocks to run; ``<!-- docs-test: mesh ARGS -->`` passes ARGS, e.g.
more pods, or ``--rabbitmq`` for a private RabbitMQ). The blocks run in order in
one bash session (see ``session.py``); the first that fails ends the test with the document's
file:line, the exit status and the block's output. Rules for writing blocks: ``blocks.py``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from .blocks import ROOT, display, parse
from .devmesh import DevMesh, make_copy, reader_env
from .session import run_session

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SESSION_TIMEOUT_S = 420.0
SHARES = 3
"""The documents are dealt to this many test modules (this one, ``test_docs_b.py``, ``test_docs_c.py``):
the suite's workers take whole modules, and one module of every document would run them all in a row."""


WEIGHTS = {
    "docs/rollouts.md": 344,
    "README.md": 126,
    "docs/triggers.md": 124,
    "docs/configuration.md": 117,
    "docs/compatibility.md": 76,
    "docs/node.md": 71,
    "docs/dev.md": 67,
    "docs/cli.md": 60,
    "docs/gateway.md": 59,
    "docs/observability.md": 58,
    "docs/production.md": 49,
    "docs/delivery.md": 43,
    "docs/clients.md": 40,
    "docs/testing.md": 34,
    "docs/wire-protocol.md": 24,
}
"""Seconds each document took in one run of the suite on 2 busy cores (others: about 10)."""


def share(index: int) -> list[Path]:
    """Share ``index`` of the documents: the heaviest first, each to the share with the least work so far
    (greedy), so the shares take about as long as each other."""
    loads = [0] * SHARES
    dealt: list[list[Path]] = [[] for _ in range(SHARES)]
    for document in sorted(DOCUMENTS, key=lambda d: (-WEIGHTS.get(display(d), 10), display(d))):
        lightest = loads.index(min(loads))
        loads[lightest] += WEIGHTS.get(display(document), 10)
        dealt[lightest].append(document)
    return sorted(dealt[index])


@pytest.mark.slow
@pytest.mark.timeout(SESSION_TIMEOUT_S + 120)
@pytest.mark.parametrize("document", share(0), ids=display)
async def test_document_runs_as_written(document: Path) -> None:
    await run_document(document)


async def run_document(document: Path) -> None:
    """Run ``document``'s blocks against its own dev mesh (see the module doc); fail with the first
    block that does not do what the document says."""
    doc = parse(document)
    blocks = doc.runnable
    if not blocks:
        return  # nothing to run; parsing checked its directives
    # Not under pytest's basetemp (mode 0700): the mesh's Postgres runs as an unprivileged user.
    scratch = Path(tempfile.mkdtemp(prefix="dormant-docs-"))
    try:
        repo = make_copy(scratch)
        env = reader_env(scratch / "home")
        mesh = None if doc.mesh_args is None else DevMesh(repo, doc.mesh_args, env, scratch / "dev.log")
        try:
            if mesh is not None:
                await mesh.start()
            # The blocks' `mktemp -d` scratch goes with the rest (the mesh keeps the system's TMPDIR).
            (scratch / "tmp").mkdir()
            session_env = {**env, "TMPDIR": str(scratch / "tmp")}
            result = await run_session(
                blocks, workdir=repo, scratch=scratch, env=session_env, timeout=SESSION_TIMEOUT_S
            )
        finally:
            if mesh is not None:
                await mesh.stop()
        started = f"mesh ready in {mesh.started_in:.1f}s; " if mesh is not None else ""
        print(f"{display(document)}: {started}{result.timings()}")
        if result.failure is not None:
            mesh_log = f"\n--- dormant dev (tail)\n{mesh.tail()}" if mesh is not None else ""
            pytest.fail(result.failure + mesh_log, pytrace=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
