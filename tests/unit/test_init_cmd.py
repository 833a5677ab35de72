"""``dormant init``: the skeleton builds, its own unit test passes, and bad names or busy directories are
refused with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dormant_cli import main
from dormant_cli.init_cmd import class_name, unit_test_file
from dormant_codegen import generate

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOTS = ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    roots = [str(ROOT / root) for root in SOURCE_ROOTS]
    env["PYTHONPATH"] = os.pathsep.join([*roots, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_the_skeleton_passes_its_own_unit_test(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "hello-service"
    assert main(["init", "hello-service", "--dir", str(target)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"created hello-service in {target}")
    assert "dormant dev" in out and "--watch" in out
    test_file = target / "tests" / "test_hello_service.py"
    assert test_file.is_file()
    assert '@service("hello-service")' in (target / "service.py").read_text()
    assert "class HelloService:" in (target / "service.py").read_text()
    # init ran the generator: the committed-style output is there and fresh.
    assert (target / "generated" / "models.py").is_file()
    assert generate(target, check=True).up_to_date

    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target / "tests")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_the_generated_test_fails_when_the_handler_breaks_its_promise(tmp_path: Path) -> None:
    # The skeleton's test asserts something: change the greeting and it fails.
    target = tmp_path / "svc"
    assert main(["init", "greeter", "--dir", str(target)]) == 0
    handler = target / "service.py"
    handler.write_text(handler.read_text().replace('f"Hello, {request.name}!"', 'f"Bye, {request.name}!"'))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(target / "tests")],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout


def test_init_refuses_a_directory_that_is_not_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    assert main(["init", "hello-service", "--dir", str(target)]) == 1
    err = capsys.readouterr().err
    assert err == f"error: {target} is not empty; choose a new directory with --dir\n"
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]


def test_init_fills_an_empty_directory(tmp_path: Path) -> None:
    target = tmp_path / "empty"
    target.mkdir()
    assert main(["init", "a1", "--dir", str(target)]) == 0
    assert (target / "tests" / "test_a1.py").is_file()


def test_init_refuses_a_file_in_the_way(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["init", "hello-service", "--dir", str(target)]) == 1
    assert capsys.readouterr().err == f"error: {target} exists and is not a directory\n"


@pytest.mark.parametrize("name", ["Hello", "hello_service", "-hello", "hello-", "a" * 65, ""])
def test_init_refuses_names_the_service_decorator_refuses(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "svc"
    assert main(["init", "--dir", str(target), "--", name]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: invalid service name {name!r}: use lowercase letters")
    assert err.count("\n") == 1
    assert not target.exists()


def test_init_defaults_to_a_directory_named_after_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["init", "orders"]) == 0
    assert (tmp_path / "orders" / "service.py").is_file()
    assert (tmp_path / "orders" / "tests" / "test_orders.py").is_file()


def test_names_of_the_class_and_the_test_module() -> None:
    assert class_name("hello-service") == "HelloService"
    assert class_name("a") == "A"
    assert class_name("9lives") == "Service9lives"
    assert unit_test_file("hello-service") == "test_hello_service.py"
