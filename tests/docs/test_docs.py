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


@pytest.mark.slow
@pytest.mark.timeout(SESSION_TIMEOUT_S + 120)
@pytest.mark.parametrize("document", DOCUMENTS, ids=display)
async def test_document_runs_as_written(document: Path) -> None:
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
