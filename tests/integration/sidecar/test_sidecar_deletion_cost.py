"""The pod's deletion cost follows its slot: a real Pod, catalog, layers and fake runtime; the Kubernetes
API (which cannot run here) is a recorder of ``patch_namespaced_pod`` calls (the wire shape of those
calls is checked in tests/unit/test_sidecar_kubernetes.py)."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from sidecar_helpers import wait_for

from dormant_catalog import Catalog
from dormant_sidecar import Pod
from dormant_sidecar.kubernetes import DELETION_COST, DeletionCost

DeployApp = Callable[..., Awaitable[int]]
StartPod = Callable[..., Awaitable[Pod]]


class RecordingApi:
    def __init__(self) -> None:
        self.costs: list[str] = []
        self.lock = threading.Lock()

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **kwargs: Any) -> None:
        assert (name, namespace) == ("pool-abc", "dormant")
        with self.lock:
            self.costs.append(body["metadata"]["annotations"][DELETION_COST])

    def last(self) -> str | None:
        with self.lock:
            return self.costs[-1] if self.costs else None


async def test_claiming_and_freeing_a_slot_set_the_pods_deletion_cost(
    catalog: Catalog, deploy_app: DeployApp, start_pod: StartPod
) -> None:
    api = RecordingApi()
    pod = await start_pod()
    pod.deletion_cost = DeletionCost(api, "pool-abc", "dormant")  # before the pod's task first runs
    assert api.last() is None
    await deploy_app("svc", "v1 code")
    await wait_for(lambda: pod.claim is not None, what="slot claimed")
    await wait_for(lambda: api.last() == "1000", what="cost of a serving pod")
    await catalog.deploy("svc", replicas=0)  # the slot goes away: the pod is free again
    await wait_for(lambda: pod.claim is None, what="pod idle")
    await wait_for(lambda: api.last() == "0", what="cost of a free pod")
    assert api.costs == ["1000", "0"]
