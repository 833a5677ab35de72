"""One runtime process and the sidecar end of its control protocol (declared in ``dormant._control``).

The runtime gets commands as JSON lines on stdin (``Load``, ``Drain``; EOF also drains) and reports
events as JSON lines on the pipe named by ``DORMANT_CONTROL_FD``: ``standby`` (imports done),
``ready`` (serving), ``failed`` (then exit 1) and ``drained`` (then exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dormant._control import (
    CONNECTION,
    CONTROL_FD_ENV,
    DRAINED,
    FAILED,
    READY,
    STANDBY,
    Command,
    Drain,
    Load,
    decode_event,
    encode_command,
)
from dormant_telemetry.logs import Stream

from .logs import MAX_LINE, LogSink, Origin, OutputSink, prefixed, pump_output

log = logging.getLogger("dormant.sidecar")


class RuntimeFailed(Exception):
    """The runtime reported ``failed``, exited, or did not answer in time."""


class RuntimeProcess:
    """Spawn with ``await RuntimeProcess.spawn(cmd, env, sink)``; see the module docstring.

    Its output goes line by line to ``output`` (``logs.LogCapture`` in a pod), or as ``[label] line`` to
    ``sink`` when there is none.
    """

    def __init__(
        self, proc: asyncio.subprocess.Process, sink: LogSink, output: OutputSink | None = None
    ) -> None:
        self.proc = proc
        self.label = f"standby {proc.pid}"
        self.error: str | None = None
        self.app_dir: Path | None = None
        self.draining = False
        self.connected = True
        """The runtime's broker connection, as it last reported it (``connection`` events after ``ready``)."""
        self.service: str | None = None
        self.version: int | None = None
        """The service and version loaded (None while standing by)."""
        self._output = output if output is not None else prefixed(sink)
        self._standby = asyncio.Event()
        self._ready = asyncio.Event()
        self._failed = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._exited: asyncio.Task[int] = asyncio.create_task(proc.wait())
        self.gone = asyncio.Event()
        """Set once the process has exited."""
        self._exited.add_done_callback(lambda _: self.gone.set())

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    @property
    def running(self) -> bool:
        return self.proc.returncode is None

    @property
    def standing_by(self) -> bool:
        """It has done its imports and waits for a load command."""
        return self._standby.is_set() and not self._ready.is_set() and self.running

    @property
    def ready(self) -> bool:
        """It loaded its version and serves it (subscribed)."""
        return self._ready.is_set() and self.running

    @property
    def exited(self) -> asyncio.Task[int]:
        """Done (with the exit code) once the process has exited."""
        return self._exited

    @classmethod
    async def spawn(
        cls, cmd: Sequence[str], env: Mapping[str, str], sink: LogSink, *, output: OutputSink | None = None
    ) -> RuntimeProcess:
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**env, CONTROL_FD_ENV: str(write_fd)},
                pass_fds=(write_fd,),
                limit=MAX_LINE,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        runtime = cls(proc, sink, output)
        try:
            await runtime._attach(read_fd)
        except BaseException:
            await runtime.kill()
            raise
        return runtime

    async def _attach(self, read_fd: int) -> None:
        loop = asyncio.get_running_loop()
        control = asyncio.StreamReader(limit=MAX_LINE)
        pipe = os.fdopen(read_fd, "rb", buffering=0)
        try:
            await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(control), pipe)
        except BaseException:
            pipe.close()
            raise
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._tasks = [
            asyncio.create_task(self._read_events(control)),
            asyncio.create_task(pump_output(self.proc.stdout, lambda: self._origin("stdout"), self._output)),
            asyncio.create_task(pump_output(self.proc.stderr, lambda: self._origin("stderr"), self._output)),
        ]

    def _origin(self, stream: Stream) -> Origin:
        return Origin(self.label, self.service, self.version, stream)

    async def _read_events(self, control: asyncio.StreamReader) -> None:
        while True:
            line = await control.readline()
            if not line:
                return
            event = decode_event(line)
            if event is None:
                log.warning("runtime %s sent a malformed event: %r", self.pid, line[:200])
                continue
            if event.kind == STANDBY:
                self._standby.set()
            elif event.kind == READY:
                self._ready.set()
            elif event.kind == FAILED:
                self.error = event.error
                self._failed.set()
            elif event.kind == CONNECTION:
                self.connected = bool(event.fields.get("connected"))
                if not self.connected:
                    log.warning("runtime %s (%s) lost its broker connection", self.pid, self.label)
            elif event.kind == DRAINED:
                log.debug("runtime %s (%s) drained", self.pid, self.label)

    async def _until(self, event: asyncio.Event, what: str, timeout_s: float) -> None:
        """Wait for ``event``; raise ``RuntimeFailed`` on ``failed``, exit or timeout."""
        waiter = asyncio.create_task(event.wait())
        failed = asyncio.create_task(self._failed.wait())
        try:
            done, _ = await asyncio.wait(
                {waiter, failed, self._exited}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            failed.cancel()
        if event.is_set():
            return
        if self._failed.is_set():
            raise RuntimeFailed(f"runtime {self.pid} failed: {self.error}")
        if self._exited in done:
            raise RuntimeFailed(f"runtime {self.pid} exited with code {self.returncode} before {what}")
        raise RuntimeFailed(f"runtime {self.pid} was not {what} within {timeout_s:g} s")

    async def wait_standby(self, timeout_s: float) -> None:
        await self._until(self._standby, "standing by", timeout_s)

    async def load(self, load: Load, *, timeout_s: float) -> None:
        """Send ``load`` and wait for ``ready`` (what each field means: ``dormant._control.Load``)."""
        self.label = f"{load.service} v{load.version}"
        self.service, self.version = load.service, load.version
        self.app_dir = load.app_dir
        await self._send(load)
        await self._until(self._ready, "ready", timeout_s)

    async def _send(self, command: Command) -> None:
        stdin = self.proc.stdin
        if stdin is None or stdin.is_closing():
            raise RuntimeFailed(f"runtime {self.pid} no longer takes commands")
        try:
            stdin.write(encode_command(command))
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise RuntimeFailed(f"runtime {self.pid} no longer takes commands: {exc}") from exc

    def _close_stdin(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.is_closing():
            self.proc.stdin.close()

    async def drain(self, timeout_s: float) -> int:
        """Ask the runtime to finish in-flight calls and exit; kill it after ``timeout_s``."""
        self.draining = True
        if self.running:
            with contextlib.suppress(RuntimeFailed):
                await self._send(Drain())
            self._close_stdin()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._exited), timeout_s)
        if self.running:
            log.warning(
                "runtime %s (%s) did not drain within %g s; killing it", self.pid, self.label, timeout_s
            )
        return await self.kill()

    async def kill(self) -> int:
        """SIGKILL (if still running) and reap; returns the exit code."""
        self.draining = True
        self._close_stdin()
        if self.running:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
        code = await asyncio.shield(self._exited)
        # The pipes reach EOF once the process is gone; let the pumps flush the last lines.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), 2.0)
        for task in self._tasks:
            task.cancel()
        return code
