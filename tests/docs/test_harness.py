"""The docs test's own rules, on small documents and without a mesh: what runs, in which session, and
how a failure is reported (file:line, exit status, output)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from .blocks import Block, DocError, parse
from .session import SessionResult, run_session

ENV = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def _blocks(tmp_path: Path, text: str) -> list[Block]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "doc.md").write_text(text)
    return parse(tmp_path / "doc.md").runnable


async def _run(tmp_path: Path, text: str, *, timeout: float = 30.0) -> SessionResult:
    blocks = _blocks(tmp_path, text)
    return await run_session(
        blocks, workdir=tmp_path / "work", scratch=tmp_path / "scratch", env=ENV, timeout=timeout
    )


def test_only_shell_blocks_run_and_directives_apply(tmp_path: Path) -> None:
    doc = parse(
        tmp_path / "doc.md",
        "```sh\necho a\n```\n```\nplain\n```\n```python\nprint(1)\n```\n\n"
        "<!-- docs-test: skip (slow) -->\n```bash\nsleep 100\n```\n"
        "<!-- docs-test: python -->\n```python\nprint(2)\n```\n"
        "<!-- docs-test: mesh --pods 3 -->\n```console\n$ echo b\noutput\n```\n",
    )
    assert [(b.line, b.mode) for b in doc.runnable] == [(1, "sh"), (16, "python"), (20, "console")]
    skipped = [b for b in doc.blocks if b.skip_reason]
    assert [(b.line, b.skip_reason) for b in skipped] == [(12, "slow")]
    assert doc.mesh_args == ["--pods", "3"]
    assert parse(tmp_path / "x.md", "<!-- docs-test: mesh none -->\n").mesh_args is None


@pytest.mark.parametrize(
    "text",
    [
        "<!-- docs-test: skpi (typo) -->\n```sh\necho\n```\n",
        "<!-- docs-test: skip -->\n```sh\necho\n```\n",  # a skip needs its reason
        "<!-- docs-test: skip (x) -->\nprose\n```sh\necho\n```\n",
        "<!-- docs-test: python -->\n```sh\necho\n```\n",
        "```console\nno prompt here\n```\n",
        "```sh\necho never closed\n",
    ],
)
def test_a_document_the_test_cannot_run_as_written_is_an_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(DocError, match=r"doc\.md:\d+"):
        parse(tmp_path / "doc.md", text)


def test_console_blocks_run_their_commands_not_their_output(tmp_path: Path) -> None:
    block = parse(
        tmp_path / "doc.md",
        "```console\n$ echo one \\\n    two\nsample output\n"
        "$ for i in 1; do\n>   echo $i\n> done\n1\n> quoted\n```\n",
    ).blocks[0]
    # One script line per document line, so a failing line maps back.
    assert block.script() == "echo one \\\n    two\n\nfor i in 1; do\n  echo $i\ndone\n\n\n"


async def test_variables_and_directory_carry_from_block_to_block(tmp_path: Path) -> None:
    result = await _run(
        tmp_path,
        '```sh\nmkdir sub && cd sub\nname=Ann\n```\ntext\n```bash\necho "$name in ${PWD##*/}"\n```\n'
        "<!-- docs-test: python -->\n```python\nimport os\nprint(os.getcwd().rsplit('/', 1)[1])\n```\n",
    )
    assert result.failure is None
    assert [r.output.strip() for r in result.runs] == ["", "Ann in sub", "sub"]


async def test_output_without_a_final_newline_stays_with_its_block(tmp_path: Path) -> None:
    result = await _run(tmp_path, "```sh\nprintf '{\"a\": 1}'\n```\n```sh\nprintf b; false\n```\n")
    assert result.runs[0].output == '{"a": 1}'
    assert result.failure is not None and result.failure.splitlines()[0].endswith(f"{tmp_path / 'doc.md'}:4")
    assert result.failure.splitlines()[1] == "b"


async def test_a_failing_command_names_its_line_status_and_output(tmp_path: Path) -> None:
    result = await _run(
        tmp_path,
        "# Title\n\n```sh\necho fine\n```\n\n```sh\necho before\nls /nonexistent-dir\necho after\n```\n"
        "```sh\necho never\n```\n",
    )
    assert result.failure is not None
    head = result.failure.splitlines()[0]
    doc = tmp_path / "doc.md"
    # The fence is line 7; `ls` is line 9 of the document.
    assert head.startswith(f"{doc}:9: command failed (exit 2) in the block at {doc}:7"), head
    assert "before" in result.failure and "nonexistent-dir" in result.failure
    assert "after" not in result.failure
    assert len(result.runs) == 2


@pytest.mark.parametrize(
    ("script", "problem"),
    [
        ("false | cat", "command failed (exit 1)"),  # pipefail: a failing stage fails the pipe
        ("echo $UNSET_NAME", "command failed"),  # nounset
        ("", None),
    ],
)
async def test_strict_mode(tmp_path: Path, script: str, problem: str | None) -> None:
    result = await _run(tmp_path, f"```sh\n{script}\n```\n")
    if problem is None:
        assert result.failure is None
    else:
        assert result.failure is not None and problem in result.failure


async def test_expected_failures_must_fail_with_their_text(tmp_path: Path) -> None:
    ok = await _run(
        tmp_path / "a",
        '<!-- docs-test: fails "No such file" -->\n```sh\nx=1\ncat /nonexistent\n```\n'
        '```sh\necho "${x:-unset}"\n```\n',
    )
    assert ok.failure is None
    assert ok.runs[0].status == 1 and ok.runs[1].output.strip() == "unset"  # it ran in a subshell
    passed = await _run(tmp_path / "b", '<!-- docs-test: fails "boom" -->\n```sh\ntrue\n```\n')
    assert passed.failure is not None and "expected to fail, but exited 0" in passed.failure
    wrong = await _run(tmp_path / "c", '<!-- docs-test: fails "boom" -->\n```sh\nfalse\n```\n')
    assert wrong.failure is not None and "lacks 'boom'" in wrong.failure


async def test_background_jobs_are_stopped_and_do_not_hold_the_session(tmp_path: Path) -> None:
    begin = time.monotonic()
    result = await _run(tmp_path, "```sh\nsleep 300 &\necho started\n```\n")
    assert result.failure is None and result.runs[0].output.strip() == "started"
    assert time.monotonic() - begin < 60


async def test_a_block_that_hangs_is_reported_by_where_it_hangs(tmp_path: Path) -> None:
    result = await _run(tmp_path, "```sh\necho a\n```\n\n```sh\nsleep 300\n```\n", timeout=2)
    assert result.failure is not None and "timed out" in result.failure
    assert f"block at {tmp_path / 'doc.md'}:5" in result.failure
