"""The pod's part in Kubernetes: its own ``controller.kubernetes.io/pod-deletion-cost``, and the
``preStop`` drain hook.

When the pool's Deployment scales down, its ReplicaSet deletes the pods with the lowest deletion cost
first (after pods that are not scheduled, pending or not ready). A sleeping pod that holds no replica
slot is cheap to lose; one that serves a slot is not: removing it drains a runtime and moves the slot to
another pod. So the sidecar annotates its own pod when it claims a slot (``SERVING_COST``) and when it
frees it (``FREE_COST``), and a scale-down removes free pods first.

It is on only in a cluster: ``DORMANT_POD_NAME`` (the pod's name, from the downward API) is set. The
namespace is ``DORMANT_POD_NAMESPACE`` or the service account's. The pod's service account needs
``get`` and ``patch`` on pods in its namespace (the Helm chart's Role). With ``DORMANT_POD_NAME`` set
but no ``kubernetes`` client or no in-cluster configuration, the pod refuses to start (the setting would
be ignored otherwise).

The annotation is written by a merge patch (RFC 7386) on the pod, ``{"metadata": {"annotations":
{...}}}``, from a task of its own: claiming and freeing never wait for the API server. Only the latest
wanted cost is written (a claim and a free in quick succession cost one patch, or two); a failed patch
is retried with a growing wait while that cost is still wanted, and the first failure of a run is logged
once as a warning.

``python -m dormant_sidecar.kubernetes drain`` is the pool container's ``preStop`` hook: it sends
SIGTERM to the sidecar (PID 1 of the container) and waits until it has drained, released its slot and
exited, so that the kubelet's own SIGTERM finds the work done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

log = logging.getLogger("dormant.sidecar")

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
SERVING_COST = 1000
"""The cost of a pod that holds a slot: removed after every free pod."""
FREE_COST = 0
"""The cost of a free pod, the same as a pod without the annotation (a new pod that has not claimed)."""
POD_NAME_ENV = "DORMANT_POD_NAME"
POD_NAMESPACE_ENV = "DORMANT_POD_NAMESPACE"
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
MERGE_PATCH = "application/merge-patch+json"
"""The patch type, said explicitly: left to itself the client picks one from the body's shape, which
has changed between its versions; a merge patch of ``metadata.annotations`` means the same everywhere."""
REQUEST_TIMEOUT_S = 10.0
RETRY_MIN_S = 1.0
RETRY_MAX_S = 60.0


class PodPatcher(Protocol):
    """What this module needs of ``kubernetes.client.CoreV1Api``."""

    def patch_namespaced_pod(self, name: str, namespace: str, body: Any, **kwargs: Any) -> Any: ...


def annotation_patch(cost: int) -> dict[str, Any]:
    """The merge patch that sets the pod's deletion cost (annotation values are strings)."""
    return {"metadata": {"annotations": {DELETION_COST: str(cost)}}}


class DeletionCost:
    """Keeps the pod's deletion cost in step with whether it serves a slot. ``disabled()`` outside a
    cluster: then every method does nothing."""

    def __init__(self, api: PodPatcher | None, name: str = "", namespace: str = "") -> None:
        self.api = api
        self.name = name
        self.namespace = namespace
        self.applied: int | None = None
        """The cost the API server last accepted (None: not written yet)."""
        self._wanted: int | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.enabled else "off"
        return f"DeletionCost({where})"

    @classmethod
    def disabled(cls) -> DeletionCost:
        return cls(None)

    @property
    def enabled(self) -> bool:
        return self.api is not None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DeletionCost:
        """On when ``DORMANT_POD_NAME`` is set (see the module docstring); SystemExit when it is set and
        the pod cannot reach the API server's configuration."""
        environ = os.environ if environ is None else environ
        name = environ.get(POD_NAME_ENV, "").strip()
        if not name:
            return cls.disabled()
        namespace = environ.get(POD_NAMESPACE_ENV, "").strip()
        if not namespace:
            try:
                namespace = NAMESPACE_FILE.read_text().strip()
            except OSError:
                raise SystemExit(
                    f"{POD_NAME_ENV} is set but the pod's namespace is unknown: set {POD_NAMESPACE_ENV}"
                ) from None
        try:
            from kubernetes import client, config  # lazy: optional dependency, only in a cluster
        except ImportError:
            raise SystemExit(
                f"{POD_NAME_ENV} is set (pod deletion cost) but the kubernetes client is not installed"
                " (pip install 'dormant[kubernetes]')"
            ) from None
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException as exc:
            raise SystemExit(f"{POD_NAME_ENV} is set but this is not a Kubernetes pod: {exc}") from None
        # The generated client's signature is wider than what this module calls.
        return cls(cast(PodPatcher, client.CoreV1Api()), name, namespace)

    # ------------------------------------------------------------------ what the pod says

    def serving(self, serving: bool) -> None:
        """The pod claimed a slot (True) or freed it (False). Called from the event loop; returns at
        once, the patch is sent by a background task."""
        if self.api is None:
            return
        self._wanted = SERVING_COST if serving else FREE_COST
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._apply(), name="pod-deletion-cost")

    async def close(self) -> None:
        """Stop the background task (a patch under way is abandoned)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ------------------------------------------------------------------ the writer

    def _patch(self, cost: int) -> None:
        assert self.api is not None
        self.api.patch_namespaced_pod(
            self.name,
            self.namespace,
            annotation_patch(cost),
            _content_type=MERGE_PATCH,
            _request_timeout=REQUEST_TIMEOUT_S,
        )

    async def _apply(self) -> None:
        wait = RETRY_MIN_S
        warned = False
        while True:
            self._changed.clear()
            cost = self._wanted
            if cost is None or cost == self.applied:
                await self._changed.wait()
                continue
            try:
                # The client is synchronous (urllib3): a thread keeps the event loop free.
                await asyncio.to_thread(self._patch, cost)
            except Exception as exc:
                status = getattr(exc, "status", None)
                detail = f"HTTP {status}" if status is not None else type(exc).__name__
                if status == 403:
                    detail += " (the service account needs get and patch on pods)"
                (log.debug if warned else log.warning)(
                    "cannot set %s=%s on pod %s/%s: %s; retrying",
                    DELETION_COST,
                    cost,
                    self.namespace,
                    self.name,
                    detail,
                )
                warned = True
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)
                wait = min(wait * 2, RETRY_MAX_S)
                continue
            if warned:
                log.info("pod deletion cost set again (%s=%s)", DELETION_COST, cost)
            self.applied, wait, warned = cost, RETRY_MIN_S, False


# ---------------------------------------------------------------------- preStop


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drain(pid: int = 1, *, timeout_s: float = 60.0, poll_s: float = 0.5) -> int:
    """SIGTERM ``pid`` and wait until it exits or ``timeout_s`` passes; the exit status of the hook
    (0: drained; 1: still running at the deadline; 0 too when there was nothing to signal)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return 0
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return 0
        time.sleep(poll_s)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dormant_sidecar.kubernetes",
        description="The pool container's preStop hook: drain the sidecar and wait for it.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("drain", help="SIGTERM the sidecar and wait until it drained and exited")
    p.add_argument("--pid", type=int, default=1, help="the sidecar's process id (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds (default 60)")
    args = parser.parse_args(argv)
    return drain(args.pid, timeout_s=args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
