"""A service's third-party dependencies, resolved at build time into a *dependency layer*.

A service declares them in ``requirements.txt`` or in the ``[project] dependencies`` of a
``pyproject.toml`` in its directory (one of the two). ``dormant build`` and ``dormant publish`` (and
the gateway's ZIP upload) resolve them with pip, this interpreter's pip, for this interpreter's Python
version and platform (the runtime's, since pods run the same base runtime):

1. ``pip install --dry-run --ignore-installed --report`` resolves the set (installed packages do not
   count: the layer must hold all of it) without installing anything;
2. the *lock* is the sorted ``name==version`` list pip resolved plus the Python cache tag and the
   platform; its sha256 names the layer image (``dormant-deps-<hash>``) in the layer store;
3. only when the store has no image of that name are the pinned packages installed
   (``pip install --target --no-deps``, exactly the lock) and packed under ``python/`` by the app
   layer's deterministic packer (``pack.pack_files``). So two services (or two versions) with the
   same resolved set share one layer: nothing is installed again, nothing is stored twice.

Only wheels are accepted (``--only-binary :all:``): building a source distribution runs its code, and
the gateway builds uploaded services. Every other pip setting comes from pip's own configuration and
``PIP_*`` variables (an index, ``--find-links`` …). A set that cannot be resolved fails the build with
a ``CodegenError`` at the requirements file, carrying pip's own message.

Shared layers (``dormant layer publish``, ``POST /api/v1/layers``) use the same layout: a gzip tar
whose ``python/`` folder goes on the runtime's import path (``layer_from_directory``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import sysconfig
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dormant_layers import DEPENDENCY_IMAGE_PREFIX, SHARED_LAYER_IMAGE_PREFIX, ImageRef, Store

from .diagnostics import CodegenError, Diagnostic
from .pack import pack_files
from .service import display_root

REQUIREMENTS_FILE = "requirements.txt"
PYPROJECT_FILE = "pyproject.toml"
IMPORT_ROOT = "python"
"""The folder of a dependency or shared layer that goes on the runtime's import path."""
IMAGE_PREFIX = DEPENDENCY_IMAGE_PREFIX
"""``dormant-deps-``: a registry store keeps these images in ``deps/<lock hash>``."""
LOCK_ANNOTATION = "io.dormant.dependency-lock"
PIP_TIMEOUT_S = 600.0
_SKIPPED_DIRS = frozenset({"__pycache__", "bin"})
"""Not packed: bytecode (the runtime compiles what it imports) and console scripts (their shebang
names the build machine's interpreter, and a runtime never runs them)."""


@dataclass(frozen=True, slots=True)
class DependencyLock:
    """What pip resolved: ``packages`` as sorted ``name==version``, for ``python`` on ``platform``."""

    packages: tuple[str, ...]
    python: str
    platform: str

    def canonical(self) -> bytes:
        body = {"packages": list(self.packages), "platform": self.platform, "python": self.python}
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the canonical lock: what names (and so shares) the layer."""
        return "sha256:" + hashlib.sha256(self.canonical()).hexdigest()

    @property
    def image_name(self) -> str:
        return IMAGE_PREFIX + self.digest.removeprefix("sha256:")


@dataclass(frozen=True, slots=True)
class DependencyLayer:
    """A service's resolved dependency layer: its image reference (``name@sha256:...``) and lock."""

    image: str
    lock: DependencyLock
    reused: bool
    """True when the store already held the layer of this lock (nothing was installed)."""


def current_lock_target() -> tuple[str, str]:
    """(Python cache tag, platform) of this interpreter: part of every lock."""
    return str(sys.implementation.cache_tag), sysconfig.get_platform()


def lock_from_report(report: dict[str, Any]) -> DependencyLock:
    """The lock of a ``pip install --report`` document (format 1)."""
    packages = []
    for item in report.get("install") or []:
        metadata = item.get("metadata") or {}
        name = _normalize(str(metadata.get("name", "")))
        version = str(metadata.get("version", ""))
        if not name or not version:
            raise ValueError("pip's report names a package without a name or version")
        packages.append(f"{name}=={version}")
    python, platform = current_lock_target()
    return DependencyLock(tuple(sorted(set(packages))), python, platform)


def _normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_requirements(service_dir: Path) -> tuple[Path, list[str]] | None:
    """(the declaring file, its requirement lines), or None when the service declares none."""
    service_dir = Path(service_dir)
    root = display_root(service_dir)
    requirements = service_dir / REQUIREMENTS_FILE
    pyproject = service_dir / PYPROJECT_FILE
    from_pyproject: list[str] | None = None
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project") or {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise CodegenError(
                [Diagnostic(_shown(root, PYPROJECT_FILE), 1, 1, f"invalid TOML: {exc}")]
            ) from exc
        deps = project.get("dependencies") if isinstance(project, dict) else None
        if deps is not None:
            if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
                raise CodegenError(
                    [Diagnostic(_shown(root, PYPROJECT_FILE), 1, 1, "[project] dependencies must be strings")]
                )
            from_pyproject = [d.strip() for d in deps if d.strip()]
    if requirements.is_file():
        if from_pyproject:
            raise CodegenError(
                [
                    Diagnostic(
                        _shown(root, REQUIREMENTS_FILE),
                        1,
                        1,
                        f"dependencies are declared in both {REQUIREMENTS_FILE} and {PYPROJECT_FILE}:"
                        " keep one",
                    )
                ]
            )
        lines = [
            line.split(" #", 1)[0].strip()
            for line in requirements.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith("#")
        ]
        return (requirements, lines) if lines else None
    return (pyproject, from_pyproject) if from_pyproject else None


def _shown(root: str, name: str) -> str:
    return f"{root}/{name}" if root else name


def _pip(args: list[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    try:
        return subprocess.run(
            [sys.executable, "-m", "pip", *args],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=PIP_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 1, "", f"pip took more than {PIP_TIMEOUT_S:g} s")


def _pip_failure(declared: Path, service_dir: Path, lines: list[str], output: str) -> CodegenError:
    """A diagnostic at the requirement pip names (its line in requirements.txt), with pip's message."""
    text = "\n".join(
        line for line in output.strip().splitlines() if line.strip() and not line.startswith("[notice]")
    )
    line_no = 1
    if declared.name == REQUIREMENTS_FILE:
        numbered = declared.read_text(encoding="utf-8").splitlines()
        for index, raw in enumerate(numbered, start=1):
            name = re.split(r"[\s<>=!~;\[@]", raw.strip(), maxsplit=1)[0]
            if name and not raw.lstrip().startswith("#") and re.search(re.escape(name), text, re.IGNORECASE):
                line_no = index
                break
    root = display_root(service_dir)
    message = f"the dependencies cannot be resolved (pip): {text or 'pip failed without a message'}"
    return CodegenError([Diagnostic(_shown(root, declared.name), line_no, 1, message)])


def resolve_lock(service_dir: Path, declared: Path, lines: list[str], work: Path) -> DependencyLock:
    """Ask pip what it would install for ``lines`` (nothing is installed); ``CodegenError`` if it cannot."""
    requirements = work / "requirements.in"
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = work / "report.json"
    proc = _pip(
        [
            "install",
            "--dry-run",
            "--ignore-installed",
            "--only-binary",
            ":all:",
            "--quiet",
            "--report",
            str(report),
            "-r",
            str(requirements),
        ],
        cwd=service_dir,
    )
    if proc.returncode != 0:
        raise _pip_failure(declared, service_dir, lines, proc.stderr or proc.stdout)
    try:
        return lock_from_report(json.loads(report.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise _pip_failure(declared, service_dir, lines, f"unreadable pip report: {exc}") from exc


def tree_files(root: Path, prefix: str) -> dict[str, bytes]:
    """The files under ``root`` as ``prefix/<relative path>`` -> content (no bytecode, no ``bin/``).

    Links are refused (a layer holds plain files only)."""
    found: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for d in dirnames:
            if (here / d).is_symlink():
                raise ValueError(f"{here / d} is a link: a layer holds plain files and folders only")
        dirnames[:] = [d for d in dirnames if not (here == root and d == "bin") and d != "__pycache__"]
        for name in filenames:
            path = here / name
            if path.is_symlink() or not path.is_file():
                raise ValueError(f"{path} is a link or special file: a layer holds plain files only")
            if name.endswith((".pyc", ".pyo")):
                continue
            found[f"{prefix}/{path.relative_to(root).as_posix()}"] = path.read_bytes()
    return found


def resolve_dependencies(service_dir: Path, store: Store) -> DependencyLayer | None:
    """The dependency layer of ``service_dir`` in ``store`` (built only when its lock is new), or None
    when the service declares no dependencies. ``CodegenError`` when pip cannot resolve or install."""
    service_dir = Path(service_dir)
    declared = declared_requirements(service_dir)
    if declared is None:
        return None
    path, lines = declared
    with tempfile.TemporaryDirectory(prefix="dormant-deps-") as tmp:
        work = Path(tmp)
        lock = resolve_lock(service_dir, path, lines, work)
        existing = store.lookup(lock.image_name)
        if existing is not None:
            return DependencyLayer(f"{lock.image_name}@{existing}", lock, reused=True)
        target = work / "target"
        pins = work / "lock.txt"
        pins.write_text("\n".join(lock.packages) + "\n", encoding="utf-8")
        proc = _pip(
            [
                "install",
                "--no-deps",
                "--ignore-installed",
                "--only-binary",
                ":all:",
                "--no-compile",
                "--quiet",
                "--target",
                str(target),
                "-r",
                str(pins),
            ],
            cwd=service_dir,
        )
        if proc.returncode != 0:
            raise _pip_failure(path, service_dir, lines, proc.stderr or proc.stdout)
        target.mkdir(exist_ok=True)
        layer = pack_files(tree_files(target, IMPORT_ROOT))
    ref = store.push(lock.image_name, layer, annotations={LOCK_ANNOTATION: lock.canonical().decode()})
    return DependencyLayer(str(ref), lock, reused=False)


def unpacked_size(files: dict[str, bytes]) -> int:
    """Bytes the files take once unpacked (their content)."""
    return sum(len(data) for data in files.values())


SHARED_LAYER_PREFIX = SHARED_LAYER_IMAGE_PREFIX
"""``dormant-layer-``: a registry store keeps these images in ``layers/<name>``."""


def shared_layer(directory: Path) -> tuple[bytes, int]:
    """(the gzip tar, its unpacked bytes) of a shared layer folder: its ``python/`` folder (the seed's
    ``layer.zip`` layout; ``python/lib/pythonX.Y/site-packages`` works too), packed like the app layer.

    ``ValueError`` for a folder without ``python/`` or with anything else at its root (Dormant runs
    Python: a ``nodejs/`` or ``java/`` folder would never be imported, so it is refused, not stored)."""
    directory = Path(directory)
    root = directory / IMPORT_ROOT
    if not root.is_dir():
        raise ValueError(f"a layer holds a {IMPORT_ROOT}/ folder (what goes on the import path)")
    others = sorted(p.name for p in directory.iterdir() if p.name != IMPORT_ROOT)
    if others:
        raise ValueError(f"a layer holds only {IMPORT_ROOT}/; found {', '.join(others)} beside it")
    files = tree_files(root, IMPORT_ROOT)
    if not files:
        raise ValueError(f"the layer's {IMPORT_ROOT}/ folder holds no file")
    return pack_files(files), unpacked_size(files)


def push_shared_layer(directory: Path, name: str, store: Store) -> tuple[str, int]:
    """Pack ``directory`` (``shared_layer``) into ``store`` as the image ``dormant-layer-<name>``;
    (its reference ``name@sha256:...``, its unpacked bytes). The same files give the same reference."""
    layer, size = shared_layer(directory)
    return str(store.push(SHARED_LAYER_PREFIX + name, layer)), size


def tag_version(store: Store, image: str, version: int) -> None:
    """Tag ``image`` (``name@sha256:...``) ``v<version>``, its catalog version: in a registry the tag
    shows which image a version is and keeps it from garbage collection (pods pull by digest)."""
    store.tag(ImageRef.parse(image), f"v{version}")
