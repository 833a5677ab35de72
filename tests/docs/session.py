"""Running a document's blocks in order in one bash session, and saying which one failed and why.

One ``bash`` process per document, so variables and the working directory carry from block to block
as they do for a reader pasting them into one shell. The driver script ``source``s each block's file
under ``set -eEu -o pipefail`` (a failing command, a failing stage of a pipe or an unset variable ends
the session) with an ``ERR`` trap that prints the failing file and line; markers between blocks split
the merged output per block. A block that is expected to fail (``fails "TEXT"``) runs in a subshell
and its status is printed instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from .blocks import Block

OUTPUT_TAIL = 6000  # characters of a failing block's output shown in the failure


@dataclass(slots=True)
class BlockRun:
    block: Block
    output: str = ""
    seconds: float = 0.0
    status: int | None = None  # a `fails` block's exit status


@dataclass(slots=True)
class SessionResult:
    runs: list[BlockRun] = field(default_factory=list)
    failure: str | None = None  # None: every block did what the document says

    def timings(self) -> str:
        return ", ".join(f"{r.block.where} {r.seconds:.1f}s" for r in self.runs)


def driver_script(blocks: list[Block], block_dir: Path, workdir: Path, token: str) -> str:
    """The bash script that runs ``blocks`` (written to ``block_dir``) from ``workdir``."""
    mark = f"@@docs-test-{token}"
    trap = f"trap 'echo \"{mark} failed $? ${{BASH_SOURCE[0]}}:$LINENO\"' ERR"
    out = ["set -eEu -o pipefail", trap, f"cd {_quote(workdir)}"]
    for index, block in enumerate(blocks):
        suffix = "py" if block.mode == "python" else "sh"
        name = f"{index:02d}-{block.path.stem}-L{block.line}.{suffix}"
        (block_dir / name).write_text(block.script())
        path = _quote(block_dir / name)
        out.append(f'echo "{mark} block {index} $EPOCHREALTIME"')
        if block.mode == "python":
            out.append(f"python {path}")
        elif block.expect_failure is not None:
            # Outside a condition (where bash would ignore -e inside the subshell too), with the trap
            # off: the failure is the expected outcome, its status is reported instead.
            out += ["trap - ERR", "set +e", f"( set -e; source {path} )", f'echo "{mark} status $?"']
            out += ["set -e", trap]
        else:
            out.append(f"source {path}")
    out.append(f'echo "{mark} done $EPOCHREALTIME"')
    return "\n".join(out) + "\n"


async def run_session(
    blocks: list[Block], *, workdir: Path, scratch: Path, env: dict[str, str], timeout: float
) -> SessionResult:
    """Run ``blocks`` in one bash session; ``scratch`` holds the driver and the block files."""
    token = secrets.token_hex(6)
    block_dir = scratch / "blocks"
    block_dir.mkdir(parents=True, exist_ok=True)
    driver = scratch / "driver.sh"
    driver.write_text(driver_script(blocks, block_dir, workdir, token))
    transcript = scratch / "transcript.log"
    with transcript.open("wb") as out:  # a file, not a pipe: a background job must not hold the session
        process = await asyncio.create_subprocess_exec(
            "bash",
            "--noprofile",
            "--norc",
            str(driver),
            cwd=workdir,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, to stop what the blocks leave running
        )
    started = time.monotonic()
    timed_out = False
    try:
        await asyncio.wait_for(process.wait(), timeout)
    except TimeoutError:
        timed_out = True
    # Whatever the blocks left running in the background (and, after a timeout, the session itself).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()
    raw = transcript.read_bytes()
    result = _split(blocks, raw.decode(errors="replace"), token)
    if timed_out:
        current = result.runs[-1].block.where if result.runs else "the start"
        result.failure = f"timed out after {time.monotonic() - started:.0f}s in the block at {current}"
        return result
    result.failure = _verdict(result, process.returncode or 0, token, blocks)
    return result


def _split(blocks: list[Block], text: str, token: str) -> SessionResult:
    """The output of each block that started, by the markers between them."""
    mark = re.escape(f"@@docs-test-{token}")
    result = SessionResult()
    stamps: list[float] = []
    # A marker can follow output that did not end its line (curl's JSON): split anywhere, not by line.
    for piece in re.split(f"(?={mark} (?:block|done) )", text):
        head = re.match(f"{mark} (block (\\d+)|done) (\\S+)\n?", piece)
        if head is None:
            continue
        stamps.append(float(head[3]))
        if head[2] is not None:
            result.runs.append(BlockRun(blocks[int(head[2])], piece[head.end() :]))
    for run, begin, end in zip(result.runs, stamps, stamps[1:], strict=False):
        run.seconds = end - begin
    for run in result.runs:
        status = re.search(f"{mark} status (\\d+)$", run.output, flags=re.M)
        if status is not None:
            run.status = int(status[1])
    return result


def _verdict(result: SessionResult, returncode: int, token: str, blocks: list[Block]) -> str | None:
    mark = f"@@docs-test-{token}"
    if not result.runs and blocks:
        return f"the session did not start (exit {returncode})"
    last = result.runs[-1] if result.runs else None
    finished = returncode == 0 and len(result.runs) == len(blocks)
    if not finished and last is not None:
        failed = re.search(f"{re.escape(mark)} failed (\\d+) (\\S+):(\\d+)$", last.output, flags=re.M)
        where = last.block.where
        if failed is not None and failed[2].endswith(f"-L{last.block.line}.sh"):
            # $LINENO is the line in the block's file; line 1 of it is the line after the fence.
            where = f"{last.block.where.rsplit(':', 1)[0]}:{last.block.line + int(failed[3])}"
        status = failed[1] if failed is not None else str(returncode)
        return f"{where}: command failed (exit {status}) in the block at {last.block.where}\n" + _tail(
            last.output, mark
        )
    for run in result.runs:
        expected = run.block.expect_failure
        if expected is None:
            continue
        if run.status == 0:
            return f"{run.block.where}: expected to fail, but exited 0\n" + _tail(run.output, mark)
        if expected not in run.output:
            return f"{run.block.where}: failed, but its output lacks {expected!r}\n" + _tail(run.output, mark)
    return None


def _tail(output: str, mark: str) -> str:
    text = re.sub(f"{re.escape(mark)} .*", "", output)
    return ("…" + text[-OUTPUT_TAIL:]) if len(text) > OUTPUT_TAIL else text


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "'\\''") + "'"
