"""``stop_task``: cancel a background task and wait until it has really ended.

On Python 3.11, ``asyncio.wait_for`` loses a cancellation that arrives in the same loop step in which the
awaited thing completes: it returns the result instead of raising ``CancelledError`` (fixed in 3.12,
CPython gh-86296). The sidecar's background loops wait that way all the time (the lease keeper on its
wake event and its renewals, psycopg_pool's wait for a pooled connection), so a single ``cancel()``
followed by ``await task`` could wait forever while the loop ran on: a stopping pod that kept renewing
its lease. The catalog-scale simulation (``bench/catalog_scale.py``) met it in one pod in five when a
whole pool stopped at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

CANCEL_AGAIN_S = 0.5
"""How long a cancelled task may take to end before it is cancelled again."""


async def stop_task(task: asyncio.Task[Any], *, again_after_s: float = CANCEL_AGAIN_S) -> None:
    """Cancel ``task`` (again every ``again_after_s`` until it has ended) and wait for it.

    The task's own exception, if it failed before it was cancelled, is raised; a cancellation of the
    caller is not swallowed.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=again_after_s)
    if not task.cancelled():
        task.result()
