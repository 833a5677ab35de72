"""The dependency lock: what pip resolved, hashed canonically, so equal sets share one layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from dormant_codegen import CodegenError
from dormant_codegen.dependencies import (
    IMAGE_PREFIX,
    DependencyLock,
    declared_requirements,
    lock_from_report,
    tree_files,
)
from dormant_codegen.pack import pack_files


def _report(*packages: tuple[str, str]) -> dict[str, object]:
    return {"version": "1", "install": [{"metadata": {"name": n, "version": v}} for n, v in packages]}


def test_the_lock_ignores_order_and_name_spelling() -> None:
    one = lock_from_report(_report(("Typing_Extensions", "4.9.0"), ("six", "1.16.0")))
    two = lock_from_report(_report(("six", "1.16.0"), ("typing-extensions", "4.9.0")))
    assert one == two
    assert one.packages == ("six==1.16.0", "typing-extensions==4.9.0")
    assert one.digest == two.digest
    assert one.image_name == IMAGE_PREFIX + one.digest.removeprefix("sha256:")


def test_the_lock_changes_with_a_version_the_python_or_the_platform() -> None:
    base = DependencyLock(("six==1.16.0",), "cpython-311", "linux-x86_64")
    others = [
        DependencyLock(("six==1.15.0",), "cpython-311", "linux-x86_64"),
        DependencyLock(("six==1.16.0",), "cpython-312", "linux-x86_64"),
        DependencyLock(("six==1.16.0",), "cpython-311", "linux-aarch64"),
        DependencyLock(("six==1.16.0", "idna==3.6"), "cpython-311", "linux-x86_64"),
    ]
    assert len({base.digest, *(o.digest for o in others)}) == 5


def test_a_report_without_a_version_is_refused() -> None:
    with pytest.raises(ValueError):
        lock_from_report({"install": [{"metadata": {"name": "six"}}]})


def test_requirements_come_from_one_file(tmp_path: Path) -> None:
    assert declared_requirements(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["six>=1", " "]\n')
    assert declared_requirements(tmp_path) == (tmp_path / "pyproject.toml", ["six>=1"])
    (tmp_path / "requirements.txt").write_text("# none\nidna  # comment\n")
    with pytest.raises(CodegenError, match=r"both requirements\.txt and pyproject\.toml"):
        declared_requirements(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert declared_requirements(tmp_path) == (tmp_path / "requirements.txt", ["idna"])


def test_the_packed_tree_is_deterministic_and_skips_scripts_and_bytecode(tmp_path: Path) -> None:
    for root in (tmp_path / "a", tmp_path / "b"):
        (root / "pkg" / "__pycache__").mkdir(parents=True)
        (root / "bin").mkdir()
        (root / "pkg" / "__init__.py").write_text("X = 1\n")
        (root / "pkg" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
        (root / "bin" / "tool").write_text("#!/somewhere/python\n")
    files = tree_files(tmp_path / "a", "python")
    assert list(files) == ["python/pkg/__init__.py"]
    assert pack_files(files) == pack_files(tree_files(tmp_path / "b", "python"))
    (tmp_path / "a" / "link.py").symlink_to(tmp_path / "a" / "pkg" / "__init__.py")
    with pytest.raises(ValueError, match="link"):
        tree_files(tmp_path / "a", "python")
