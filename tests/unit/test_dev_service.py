"""``dormant dev``'s pieces that need no mesh: which changes the watcher acts on, the banner's sample
input, progress on a long wait, and the flags it refuses."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from dormant_cli import main
from dormant_cli.dev_cmd import sample_input
from dormant_cli.dev_service import step
from dormant_local.watch import is_source, source_changes


@pytest.mark.parametrize(
    ("rel", "wanted"),
    [
        ("service.py", True),
        ("lib/helpers.py", True),
        ("schemas/users.json", True),
        ("schemas/nested/users.json", False),
        ("config.json", False),
        ("README.md", False),
        ("generated/models.py", False),
        ("generated/interface.json", False),
        (".dormant/dev/mesh.json", False),
        (".service.py.swp", False),
        ("service.py~", False),
        ("__pycache__/service.cpython-311.pyc", False),
        ("tests/test_service.py", False),
        ("node_modules/x/index.py", False),
    ],
)
def test_which_changes_count(tmp_path: Path, rel: str, wanted: bool) -> None:
    assert is_source(tmp_path, tmp_path / rel) is wanted


def test_a_virtualenv_inside_the_service_is_not_a_source(tmp_path: Path) -> None:
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    assert not is_source(tmp_path, tmp_path / "env" / "lib" / "site.py")
    assert not is_source(tmp_path, Path("/elsewhere/service.py"))


async def test_source_changes_yields_a_saved_handler_and_ignores_generated(tmp_path: Path) -> None:
    (tmp_path / "generated").mkdir()
    handler = tmp_path / "service.py"
    handler.write_text("x = 1\n")
    stop = asyncio.Event()
    batches: list[set[Path]] = []

    async def collect() -> None:
        async for batch in source_changes(tmp_path, stop=stop):
            batches.append(batch)
            stop.set()

    task = asyncio.create_task(collect())
    # Write until the watcher (started in the background) reports: no guess at how long it takes.
    for turn in range(120):
        (tmp_path / "generated" / "models.py").write_text(f"y = {turn}\n")
        handler.write_text(f"x = {turn}\n")
        await asyncio.wait({task}, timeout=0.25)
        if task.done():
            break
    await asyncio.wait_for(task, 30)
    assert batches == [{handler.resolve()}]


async def test_a_long_wait_says_so_when_piped() -> None:
    out = io.StringIO()
    async with step("starting local Postgres", stream=out):
        await asyncio.sleep(0.1)
    assert out.getvalue() == ""  # a short wait prints nothing
    async with step("starting local Postgres", stream=out):
        await asyncio.sleep(2.0)
    assert out.getvalue() == "starting local Postgres ...\n"


def test_the_sample_input_satisfies_required_properties() -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "name": {"type": "string"},
            "age": {"type": "integer", "minimum": 18},
            "note": {"type": "string"},
        },
        "required": ["email", "name", "age"],
    }
    assert sample_input(schema) == {"email": "ann@example.com", "name": "Ann", "age": 18}
    assert sample_input({"type": "object", "properties": {}}) == {}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--pods", "0"], "error: --pods must be at least 1\n"),
        (["--replicas", "0"], "error: --replicas must be at least 1\n"),
        (
            ["--pods", "2", "--replicas", "4"],
            "error: --replicas 4 needs at least as many pods: add --pods 4\n",
        ),
    ],
)
def test_dev_refuses_impossible_pod_counts(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dev", *argv, "--state-dir", str(tmp_path / "state")]) == 1
    assert capsys.readouterr().err == message
    assert not (tmp_path / "state").exists()
