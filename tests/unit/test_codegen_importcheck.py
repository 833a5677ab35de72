"""``check_import``: a service that cannot be imported fails ``dormant build``/``publish``, not the pod.

Each failure is reported at the innermost traceback frame inside the service directory, with the
exception's type and message; a success is cached until an input or the environment changes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dormant_cli import main
from dormant_codegen import CodegenError, build, check_import, generate, importcheck
from dormant_layers import LayerStore

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "codegen"
PREFIX = "error: the service does not import, so no pod could load it: "


def service(tmp_path: Path, helpers: str | None = None, first_line: str | None = None) -> Path:
    """The ``import_check`` fixture service; ``helpers.py`` replaced, a line put before the handler's code."""
    service_dir = Path(shutil.copytree(FIXTURES / "import_check", tmp_path / "svc"))
    if helpers is not None:
        (service_dir / "helpers.py").write_text(helpers)
    if first_line is not None:
        handler = service_dir / "handlers.py"
        handler.write_text(first_line + "\n" + handler.read_text())
    generate(service_dir)
    return service_dir


def errors_of(service_dir: Path, timeout: float = importcheck.DEFAULT_TIMEOUT_S) -> list[str]:
    with pytest.raises(CodegenError) as info:
        check_import(service_dir, timeout=timeout)
    assert not (service_dir / "generated" / importcheck.CHECK_FILE).exists(), "failures are not cached"
    return [str(d) for d in info.value.diagnostics]


def test_the_fixture_imports(tmp_path: Path) -> None:
    check_import(service(tmp_path))


def test_a_missing_third_party_package(tmp_path: Path) -> None:
    service_dir = service(tmp_path, first_line="import dormant_no_such_package  # noqa")
    assert errors_of(service_dir) == [
        f"{service_dir}/handlers.py:1:1: {PREFIX}ModuleNotFoundError: No module named "
        "'dormant_no_such_package' (install it where the runtime runs, or vendor it into the service "
        "directory)"
    ]


def test_an_exception_at_import_points_at_the_raising_line(tmp_path: Path) -> None:
    helpers = (
        "import os\n\n\ndef load() -> str:\n    return os.environ['DORMANT_NO_SUCH_VARIABLE']\n\n\n"
        "VALUE = load()\n"
    )
    service_dir = service(tmp_path, helpers=helpers)
    assert errors_of(service_dir) == [
        f"{service_dir}/helpers.py:5:12: {PREFIX}KeyError: 'DORMANT_NO_SUCH_VARIABLE'"
    ]


def test_a_syntax_error_the_parser_accepts_points_at_the_token(tmp_path: Path) -> None:
    # ``ast.parse`` (what generate reads) accepts a top-level ``break``; only compiling rejects it.
    service_dir = service(tmp_path, helpers="VALUE = 1\nif VALUE:\n    break\n")
    assert errors_of(service_dir) == [
        f"{service_dir}/helpers.py:3:5: {PREFIX}SyntaxError: 'break' outside loop (helpers.py, line 3)"
    ]


def test_sys_exit_at_import(tmp_path: Path) -> None:
    service_dir = service(tmp_path, helpers="import sys\n\nsys.exit(3)\n")
    assert errors_of(service_dir) == [f"{service_dir}/helpers.py:3:1: {PREFIX}SystemExit: 3"]


def test_a_module_that_kills_the_interpreter(tmp_path: Path) -> None:
    service_dir = service(
        tmp_path, helpers="import os\nimport sys\n\nprint('bye', file=sys.stderr)\nos._exit(7)\n"
    )
    assert errors_of(service_dir) == [
        f"{service_dir}:1:1: {PREFIX}importing the service ended the interpreter (exit code 7): bye"
    ]


def test_a_module_that_hangs_at_import_times_out(tmp_path: Path) -> None:
    service_dir = service(tmp_path, helpers="import threading\n\nthreading.Event().wait()\n")
    assert errors_of(service_dir, timeout=1.0) == [
        f"{service_dir}:1:1: {PREFIX}importing the service took more than 1 s: does a module wait for "
        "something (a network call, input) at import time?"
    ]


def test_paths_are_shown_as_the_service_dir_was_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service(tmp_path, first_line="import dormant_no_such_package  # noqa")
    monkeypatch.chdir(tmp_path)
    [error] = errors_of(Path("svc"))
    assert error.startswith("svc/handlers.py:1:1: error: ")


def test_the_check_runs_with_the_service_dir_first_on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module of the service shadows a same-named installed one, as it does in the runtime; the
    # environment's path (here PYTHONPATH) is kept, so installed packages import.
    installed = tmp_path / "installed"
    installed.mkdir()
    (installed / "shadowed.py").write_text("WHERE = 'installed'\n")
    (installed / "only_installed.py").write_text("WHERE = 'installed'\n")
    monkeypatch.setenv("PYTHONPATH", f"{installed}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    first = "import only_installed, shadowed\nassert shadowed.WHERE == 'service', shadowed.WHERE"
    service_dir = service(tmp_path, first_line=first)
    (service_dir / "shadowed.py").write_text("WHERE = 'service'\n")
    generate(service_dir)
    check_import(service_dir)
    (service_dir / "shadowed.py").unlink()
    generate(service_dir)
    assert errors_of(service_dir) == [f"{service_dir}/handlers.py:2:8: {PREFIX}AssertionError: installed"]


def test_success_is_cached_until_an_input_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service_dir = service(tmp_path)
    check_import(service_dir)
    assert (service_dir / "generated" / importcheck.CHECK_FILE).is_file()
    runs: list[object] = []
    real_run = subprocess.run

    def counting_run(*args: object, **kwargs: object) -> object:
        runs.append(args)
        return real_run(*args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", counting_run)
    check_import(service_dir)
    assert runs == [], "a no-op check starts no interpreter"
    (service_dir / "helpers.py").write_text("raise ValueError('changed')\n")
    generate(service_dir)
    assert errors_of(service_dir) == [f"{service_dir}/helpers.py:1:1: {PREFIX}ValueError: changed"]
    assert len(runs) == 1


def test_the_cache_key_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service_dir = service(tmp_path)
    site = tmp_path / "site-packages"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    before = importcheck._key(service_dir)
    os.utime(site, ns=(1, 1))  # what installing or removing a package does to its folder
    assert importcheck._key(service_dir) != before
    monkeypatch.setattr(sys, "executable", "/other/python")
    assert importcheck._key(service_dir) not in (before, None)


def test_build_checks_only_when_asked(tmp_path: Path) -> None:
    service_dir = service(tmp_path, first_line="import dormant_no_such_package  # noqa")
    store = LayerStore(tmp_path / "store")
    with pytest.raises(CodegenError):
        build(service_dir, store, import_check=True)
    assert store.names() == {}, "nothing is pushed"
    # A server building uploaded code (the gateway) must not run it: the default does not import.
    assert build(service_dir, store).ref.name == "import-check"


def test_dormant_build_fails_and_can_be_told_not_to_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service_dir = service(tmp_path, first_line="import dormant_no_such_package  # noqa")
    store = str(tmp_path / "store")
    assert main(["build", str(service_dir), "--layer-store", store]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{service_dir}/handlers.py:1:1: {PREFIX}ModuleNotFoundError")
    assert main(["build", str(service_dir), "--layer-store", store, "--no-import-check"]) == 0


def test_without_the_sdk_loader_it_imports_generated_dispatch_from_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An SDK without ``dormant._loader``: blocked in the child by a sitecustomize on its PYTHONPATH.
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text("import sys\n\nsys.modules['dormant._loader'] = None\n")
    monkeypatch.setenv("PYTHONPATH", f"{blocker}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    good = service(tmp_path / "good")
    assert importcheck._run_child(good, 60.0, []) == {"ok": True}
    bad = service(tmp_path / "bad", helpers="raise ValueError('plain path')\n")
    assert errors_of(bad) == [f"{bad}/helpers.py:1:1: {PREFIX}ValueError: plain path"]
    (bad / "helpers.py").write_text("VALUE = 1\n")
    (bad / "handlers.py").write_text((bad / "handlers.py").read_text() + "\ndel ImportCheck\n")
    generate(bad)
    [error] = errors_of(bad)
    assert error.startswith(f"{bad}/generated/dispatch.py:") and "ImportError: cannot import name" in error


def test_dormant_publish_fails_before_it_reaches_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service_dir = service(tmp_path, first_line="import dormant_no_such_package  # noqa")
    # Nothing listens on port 1: the import check must fail first, with the diagnostic, not a connect error.
    args = ["--catalog-url", "postgresql://127.0.0.1:1/none", "--layer-store", str(tmp_path / "store")]
    assert main(["publish", str(service_dir), *args]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"{service_dir}/handlers.py:1:1: {PREFIX}ModuleNotFoundError: No module named "
        "'dormant_no_such_package' (install it where the runtime runs, or vendor it into the service "
        "directory)\n"
    )
