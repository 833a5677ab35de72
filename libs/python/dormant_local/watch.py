"""Watching a service directory for saved changes to its sources, for ``dormant dev --watch``.

What counts as a source: ``*.py`` modules anywhere in the service (the handler and what it imports, as
codegen reads them) and ``schemas/*.json``; for a TypeScript service also ``src/**/*.ts``, ``package.json``
and ``tsconfig.json``. What does not: ``generated/`` (every rebuild writes it, so
watching it would rebuild forever), hidden files and directories (``.dormant/`` state, editor swap
files, the generator's stamps), ``__pycache__``, ``tests/`` (neither generated nor packed),
``node_modules`` and virtualenvs.

The watcher is inotify (through ``watchfiles``): changes are yielded once ``step_ms`` pass without a
new one, so an editor's write-then-rename save arrives as one batch, and changes made while the caller
is busy with the previous batch arrive as the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import watchfiles

IGNORED_DIRS = frozenset({"generated", "__pycache__", "tests", "node_modules"})
SCHEMAS_DIR = "schemas"
NODE_SOURCES = "src"
NODE_FILES = frozenset({"package.json", "tsconfig.json"})
STEP_MS = 30
"""Quiet time that ends a batch of changes (watchfiles' default is 50 ms)."""


def is_source(service_dir: Path, path: Path) -> bool:
    """Whether a change to ``path`` can change what ``service_dir`` builds into (see the module doc)."""
    try:
        parts = path.relative_to(service_dir).parts
    except ValueError:
        return False
    if not parts or any(part.startswith(".") for part in parts):
        return False
    folders = parts[:-1]
    if any(part in IGNORED_DIRS for part in folders):
        return False
    name = parts[-1]
    if name.endswith(".py"):
        here = service_dir
        for part in folders:  # a virtualenv inside the service is not the service's code
            here = here / part
            if (here / "pyvenv.cfg").exists():
                return False
        return True
    if folders == () and name in NODE_FILES:
        return True
    if name.endswith(".ts") and folders[:1] == (NODE_SOURCES,):  # a TypeScript service's sources
        return True
    return name.endswith(".json") and folders == (SCHEMAS_DIR,)


def source_changes(
    service_dir: Path, *, stop: asyncio.Event | None = None, step_ms: int = STEP_MS
) -> AsyncIterator[set[Path]]:
    """Yield the set of changed (written, created or deleted) sources of ``service_dir``, batch by
    batch, until ``stop`` is set."""
    root = Path(service_dir).resolve()  # watchfiles reports absolute, resolved paths

    def wanted(change: watchfiles.Change, path: str) -> bool:
        return is_source(root, Path(path))

    async def batches() -> AsyncIterator[set[Path]]:
        async for changes in watchfiles.awatch(
            root, watch_filter=wanted, step=step_ms, stop_event=stop, ignore_permission_denied=True
        ):
            yield {Path(path) for _, path in changes}

    return batches()
