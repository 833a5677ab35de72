"""The runtime's memory limit, applied to a real process: allocations within it work, the one that
crosses it raises ``MemoryError`` (and the process can go on); what the process used is reported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from dormant_catalog import SlotClaim
from dormant_runtime.limits import MIB, apply_memory_limit, data_bytes, peak_rss_mb

CHILD = textwrap.dedent(
    """
    from dormant_runtime.limits import apply_memory_limit
    assert apply_memory_limit(64) is not None
    kept = bytearray(32 * 1024 * 1024)          # within the limit
    try:
        bytearray(200 * 1024 * 1024)             # past it
    except MemoryError:
        print("refused")
    more = bytearray(16 * 1024 * 1024)           # the process goes on within what is left
    print("ok", len(kept) + len(more))
    """
)


@pytest.mark.skipif(data_bytes() is None, reason="needs /proc/self/status (Linux)")
def test_the_allocation_that_crosses_the_limit_fails_and_the_rest_work() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["refused", "ok", str(48 * MIB)]


def test_the_limit_is_on_top_of_what_the_process_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    set_to: list[tuple[int, int]] = []
    monkeypatch.setattr("dormant_runtime.limits.data_bytes", lambda: 100 * MIB)
    monkeypatch.setattr("resource.setrlimit", lambda kind, limits: set_to.append(limits))
    monkeypatch.setattr("resource.getrlimit", lambda kind: (-1, -1))
    monkeypatch.setattr("resource.RLIM_INFINITY", -1)
    assert apply_memory_limit(128) == 228 * MIB
    assert set_to == [(228 * MIB, -1)]
    monkeypatch.setattr("dormant_runtime.limits.data_bytes", lambda: None)
    assert apply_memory_limit(128) is None  # cannot tell what it holds: not limited, and a warning


def test_peak_rss_is_reported_in_mb() -> None:
    assert 1 < peak_rss_mb() < 100_000


def test_a_replica_gets_its_share_of_the_services_concurrency() -> None:
    def claim(max_concurrency: int | None, replicas: int) -> SlotClaim:
        return SlotClaim(
            1,
            "svc",
            0,
            1,
            1,
            "img",
            "base",
            "dormant/1",
            "h",
            True,
            None,  # type: ignore[arg-type]
            max_concurrency=max_concurrency,
            replicas=replicas,
        )

    assert claim(None, 3).replica_concurrency is None
    assert claim(10, 3).replica_concurrency == 4  # ceil(10 / 3)
    assert claim(10, 1).replica_concurrency == 10
    assert claim(1, 4).replica_concurrency == 1  # at least one call each
