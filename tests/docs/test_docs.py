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


def share(index: int) -> list[Path]:
    """Share ``index`` of the documents: those that start a mesh dealt round-robin first (they are the
    slow ones), then the rest, so each share gets a like amount of work."""
    with_mesh = [d for d in DOCUMENTS if parse(d).mesh_args is not None and parse(d).runnable]
    rest = [d for d in DOCUMENTS if d not in with_mesh]
    return [d for n, d in enumerate(with_mesh + rest) if n % SHARES == index]


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
