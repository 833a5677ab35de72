"""Pods back off from a version that keeps failing to start: the catalog counts failed starts per
(service, version) and no pod claims it again before a wait that doubles per failure; the failure
reason is recorded where ``dormant status``, ``dormant deploy`` and callers read it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sidecar_helpers import read_log, wait_for

from dormant_catalog import Catalog
from dormant_sidecar import Pod

DeployApp = Callable[..., Awaitable[int]]
StartPod = Callable[..., Awaitable[Pod]]
WINDOW_S = 6.0


def failed(log: Path) -> list[dict[str, Any]]:
    return [e for e in read_log(log) if e["event"] == "failed"]


async def test_pods_back_off_from_a_version_that_keeps_failing(
    catalog: Catalog, deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path
) -> None:
    await deploy_app("broken", "fail: ImportError: no module named nope")
    for _ in range(4):  # every idle pod is a candidate for the retry
        await start_pod()
    [first, *_] = await wait_for(lambda: failed(runtime_log), within=20, what="the first failed start")
    await wait_for(lambda: len(failed(runtime_log)) >= 2, within=20, what="a retry")
    # Count the attempts in a window after the first: with waits of 1 s, 2 s, 4 s ... they start at
    # about 0, 1, 3 s (a loaded machine only makes them later); retrying twice a second would be ~12.
    await asyncio.sleep(max(0.0, first["t"] + WINDOW_S - time.time()))
    attempts = [e["t"] - first["t"] for e in failed(runtime_log) if e["t"] < first["t"] + WINDOW_S]
    assert 2 <= len(attempts) <= 4, attempts
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    # The times are when each runtime logged its failure, not when the slot was claimed: a log line
    # written late shortens the gap after it, so the bound is below the 1 s wait. Without the backoff
    # the attempts would follow each other within ~0.1-0.3 s.
    assert all(gap >= 0.5 for gap in gaps), gaps
    status = await catalog.deployment_status("broken")
    assert status.state == "failed", status
    assert "cannot load broken: fail: ImportError: no module named nope" in status.reason
    assert (await catalog.list_slots("broken"))[0].last_error is not None


async def test_a_failed_switch_is_reported_and_retried_with_growing_waits(
    catalog: Catalog, catalog_url: str, deploy_app: DeployApp, start_pod: StartPod, runtime_log: Path
) -> None:
    await deploy_app("svc", "hello v1")
    pod = await start_pod()
    await wait_for(lambda: pod.runtime is not None, within=20, what="v1 serving")
    serving_v1 = pod.runtime
    await deploy_app("svc", "fail: SyntaxError in v2")
    await wait_for(lambda: len(failed(runtime_log)) >= 3, within=30, what="three failed switches")
    status = await catalog.deployment_status("svc")
    assert status.state == "failed", status
    assert "failed to start v2" in status.reason and "SyntaxError in v2" in status.reason
    # Lease renewals do not wipe the reason; the old version keeps serving meanwhile.
    assert "SyntaxError in v2" in ((await catalog.list_slots("svc"))[0].last_error or "")
    assert pod.runtime is serving_v1 and serving_v1 is not None and serving_v1.running
    times = [e["t"] for e in failed(runtime_log)]
    gaps = [b - a for a, b in itertools.pairwise(times[:3])]
    # Waits of 1 s, then 2 s; log times (see above) may shorten a gap by a few tenths.
    assert gaps[0] >= 0.5 and gaps[1] >= 1.5, gaps
