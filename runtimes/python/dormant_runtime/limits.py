"""A runtime process's limits: the function's memory limit, and what the process used.

Memory: the function gets ``memory_mb`` of data (heap and anonymous mappings) beyond what the process
holds when its load command arrives, enforced by the kernel with ``RLIMIT_DATA`` (Linux counts the
heap and private writable mappings against it, which is what Python's allocator uses). A handler
that allocates past it gets ``MemoryError`` at the allocation that crosses it: the call that blew the
limit is the one that fails, with a typed ``SystemError`` naming the limit, and the process then exits
so the pod starts a clean one (the calls it had in flight, unacknowledged, are delivered again).
cgroup v2 would limit the resident set instead, but needs a delegated cgroup the pod rarely has; an
address-space limit (``RLIMIT_AS``) would count reserved-but-unused virtual memory (thread stacks,
allocator arenas) and fail long before the function used its memory. The pod starts runtimes with
``MALLOC_ARENA_MAX=2`` so that few allocator arenas are reserved.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

log = logging.getLogger("dormant.runtime")

MIB = 1024 * 1024
EXIT_OUT_OF_MEMORY = 3
"""The runtime's exit status after a call went past the memory limit (the pod restarts it)."""


def data_bytes() -> int | None:
    """The process's data segment size now (``VmData``), or None where ``/proc`` does not say."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def apply_memory_limit(memory_mb: int) -> int | None:
    """Let the process allocate ``memory_mb`` more than it holds now; the limit set (bytes), or None
    when this system cannot say how much it holds (then nothing is limited, and a warning says so)."""
    held = data_bytes()
    if held is None:
        log.warning("memory limit of %d MB not applied: this system does not report VmData", memory_mb)
        return None
    limit = held + memory_mb * MIB
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    log.info("memory limit: %d MB beyond the %d MB the runtime holds", memory_mb, held // MIB)
    return limit


def peak_rss_mb() -> float:
    """The largest resident set this process had, in MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
