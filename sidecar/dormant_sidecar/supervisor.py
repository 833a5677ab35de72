"""The pod's runtime processes: one warm standby, the serving runtime(s), and those draining.

A claim never waits for imports: ``start`` hands the pre-spawned standby a ``load`` command and
spawns the next standby once the load is done. Every child is tracked so ``close`` leaves none behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

from dormant._control import Load

from .logs import LogSink, OutputSink
from .runtime import RuntimeFailed, RuntimeProcess

log = logging.getLogger("dormant.sidecar")


class RuntimeSupervisor:
    def __init__(
        self,
        *,
        cmd: Sequence[str],
        env: Mapping[str, str],
        sink: LogSink,
        standby_timeout_s: float,
        load_timeout_s: float,
        drain_timeout_s: float,
        output: OutputSink | None = None,
    ) -> None:
        self._cmd = list(cmd)
        self._env = dict(env)
        self._sink = sink
        self._output = output
        self._standby_timeout_s = standby_timeout_s
        self._load_timeout_s = load_timeout_s
        self._drain_timeout_s = drain_timeout_s
        self._standby: RuntimeProcess | None = None
        self._children: set[RuntimeProcess] = set()
        self._drains: set[asyncio.Task[int]] = set()

    @property
    def children(self) -> frozenset[RuntimeProcess]:
        """Every runtime process not yet reaped (standby, serving and draining)."""
        return frozenset(self._children)

    @property
    def standby(self) -> RuntimeProcess | None:
        return self._standby

    async def _spawn(self) -> RuntimeProcess:
        runtime = await RuntimeProcess.spawn(self._cmd, self._env, self._sink, output=self._output)
        self._children.add(runtime)
        runtime.exited.add_done_callback(lambda _: self._children.discard(runtime))
        return runtime

    async def ensure_standby(self) -> None:
        """Spawn a standby unless a live one exists (a dead one is logged and replaced)."""
        if self._standby is not None and self._standby.running:
            return
        if self._standby is not None:
            log.warning(
                "standby runtime %s exited with code %s; spawning another",
                self._standby.pid,
                self._standby.returncode,
            )
        self._standby = await self._spawn()

    async def start(self, load: Load, *, cmd: Sequence[str] | None = None) -> RuntimeProcess:
        """Load an app into the standby and wait until it serves; then spawn the next standby.

        With a ``cmd`` other than the standby's (another base runtime), a runtime is spawned with it for
        this load instead, and the standby stays. Raises ``RuntimeFailed`` (the failed runtime is
        killed). A standby that cannot even start is replaced once before giving up.
        """
        if cmd is not None and list(cmd) != self._cmd:
            try:
                runtime = await RuntimeProcess.spawn(cmd, self._env, self._sink, output=self._output)
            except OSError as exc:
                raise RuntimeFailed(f"cannot start the runtime {cmd[0]!r}: {exc}") from exc
            self._children.add(runtime)
            runtime.exited.add_done_callback(lambda _: self._children.discard(runtime))
            try:
                await runtime.wait_standby(self._standby_timeout_s)
                await runtime.load(load, timeout_s=self._load_timeout_s)
            except BaseException:
                await runtime.kill()
                raise
            return runtime
        runtime = await self._take_standby()
        try:
            await runtime.load(load, timeout_s=self._load_timeout_s)
        except BaseException:
            await runtime.kill()
            with contextlib.suppress(Exception):
                await self.ensure_standby()
            raise
        await self.ensure_standby()
        return runtime

    async def _take_standby(self) -> RuntimeProcess:
        for attempt in (1, 2):
            await self.ensure_standby()
            runtime = self._standby
            assert runtime is not None
            self._standby = None
            try:
                await runtime.wait_standby(self._standby_timeout_s)
                return runtime
            except BaseException as exc:
                await runtime.kill()
                if attempt == 2 or not isinstance(exc, RuntimeFailed):
                    raise
                log.warning("standby runtime unusable (%s); trying a fresh one", exc)
        raise AssertionError("unreachable")

    async def drain(self, runtime: RuntimeProcess) -> int:
        """Drain ``runtime`` now and wait for it to exit (at most the drain timeout, then kill)."""
        code = await runtime.drain(self._drain_timeout_s)
        log.info("runtime %s (%s) stopped with code %s", runtime.pid, runtime.label, code)
        return code

    def drain_soon(self, runtime: RuntimeProcess) -> None:
        """Start draining ``runtime`` in the background (``close`` waits for it)."""
        runtime.draining = True
        task = asyncio.create_task(self.drain(runtime))
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)

    async def close(self) -> None:
        """Kill the standby, let background drains finish, and kill whatever is still running."""
        if self._standby is not None:
            standby, self._standby = self._standby, None
            await standby.kill()
        if self._drains:
            await asyncio.gather(*self._drains, return_exceptions=True)
        for runtime in list(self._children):
            await runtime.kill()
