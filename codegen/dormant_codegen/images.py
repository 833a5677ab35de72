"""Dormant's own container images, built without a daemon: what the pod and control images hold.

Two kinds (``KINDS``): ``pod`` (the pool's image: Dormant's platform libraries, the runtime and the
sidecar; ``python -m dormant_sidecar``) and ``control`` (the gateway and the controller, one image, the
command chooses: ``dormant gateway``, ``dormant controller``). Each is a base image with Python 3.11
pulled from a registry (``python:3.11-slim`` or a mirror of it, by digest) plus two layers written here,
the same tree ``deploy/images/{kind}.Dockerfile`` makes with Docker:

1. the third-party libraries, ``/opt/dormant/site-packages``: the installed (wheel-installed) files of
   the distributions the kind needs, taken from *this* Python environment (the requirements of
   ``pyproject.toml`` for the kind and everything they require, markers evaluated), each file checked
   against its distribution's ``RECORD`` hash, bytecode and console scripts left out, plus
   ``/opt/dormant/requirements.txt`` (``name==version``, what ``pip install --no-deps`` of the
   Dockerfile installs). The environment must be CPython on Linux and the base's architecture and Python
   version: the native wheels it holds are the image's;
2. Dormant's packages from the repository (``--source``), as ``pip install`` would lay them out (the
   ``.py`` files of each package and the package data of ``pyproject.toml``), plus ``/opt/dormant/bin/
   dormant`` (control) or the pod's work dir ``/var/lib/dormant/work`` owned by its user (pod).

The config is the base's with ``PYTHONPATH``, ``PATH``, user 10001:10001, the command, and labels: the
pod image records the base runtime and the platform interface its pods provide
(``dev.dormant.base-runtime``, ``dev.dormant.platform-interface``: the values services are published
with and pods claim by) and the Python version. Same source, environment and base → same digest.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib.metadata as metadata
import json
import os
import platform as host_platform
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from dormant_layers.images import (
    ConfigChange,
    ContainerImage,
    Directory,
    Entry,
    File,
    ImageBuildError,
    ImageReference,
    ImageRegistry,
    Platform,
    assemble,
    parse_image_reference,
    pull_base,
    push_image,
    repository_reference,
    tar_layer,
)
from dormant_layers.location import RegistryLocation, parse_registry_location

from .constants import BASE_RUNTIME, PLATFORM_INTERFACE

PREFIX = "opt/dormant"
SITE_PACKAGES = f"{PREFIX}/site-packages"
BIN_DIR = f"{PREFIX}/bin"
REQUIREMENTS_FILE = f"{PREFIX}/requirements.txt"
WORK_DIR = "var/lib/dormant/work"
UID = GID = 10001
USER = f"{UID}:{GID}"
METRICS_PORT = 9464
GATEWAY_PORT = 8080
CLI_SCRIPT = "deploy/images/dormant"
"""The ``dormant`` command of the control image, in the repository (the Dockerfile copies it too)."""

LABEL_KIND = "dev.dormant.image.kind"
LABEL_BASE_RUNTIME = "dev.dormant.base-runtime"
LABEL_PLATFORM_INTERFACE = "dev.dormant.platform-interface"
LABEL_PYTHON = "dev.dormant.python"
LABEL_TITLE = "org.opencontainers.image.title"
LABEL_VERSION = "org.opencontainers.image.version"
LABEL_DESCRIPTION = "org.opencontainers.image.description"

_SKIPPED_META = frozenset({"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"})
"""dist-info files that say how this environment installed a distribution, not what it is (RECORD is
written anew for the files kept)."""
_ARCHITECTURES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


@dataclass(frozen=True, slots=True)
class ImageKind:
    name: str
    repository: str
    """The repository under the push location: the Helm chart's ``images.pod`` and ``images.server``."""
    title: str
    description: str
    packages: tuple[str, ...] | None
    """Dormant's top-level packages in the image; None: all of them."""
    requirements: tuple[str, ...] | None
    """Names of ``pyproject.toml``'s dependencies the packages import; None: all of them."""
    extras: tuple[str, ...] = ()
    """Optional-dependency groups of ``pyproject.toml`` added."""


POD = ImageKind(
    name="pod",
    repository="pod",
    title="dormant-pod",
    description="Dormant's pod: the sidecar and the Python runtime with Dormant's platform libraries",
    packages=(
        "dormant",
        "dormant_auth",
        "dormant_catalog",
        "dormant_layers",
        "dormant_runtime",
        "dormant_secrets",
        "dormant_sidecar",
        "dormant_telemetry",
    ),
    requirements=(
        "aiomqtt",
        "paho-mqtt",
        "psycopg",
        "psycopg-pool",
        "pydantic",
        "jsonschema",
        "orjson",
        "cryptography",
        "joserfc",
        "croniter",
        "httpx",
        "hvac",
        "opentelemetry-api",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-http",
        "prometheus-client",
    ),
    extras=("kubernetes",),  # the sidecar's pod-deletion-cost and the Kubernetes secrets provider
)
CONTROL = ImageKind(
    name="control",
    repository="server",
    title="dormant-server",
    description="Dormant's gateway and rollout controller: dormant gateway | dormant controller",
    packages=None,
    requirements=None,
    extras=("kubernetes",),
)
KINDS: dict[str, ImageKind] = {kind.name: kind for kind in (POD, CONTROL)}


# ---- the repository ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Project:
    """What ``pyproject.toml`` says about Dormant's packages and dependencies."""

    root: Path
    version: str
    dependencies: tuple[str, ...]
    optional: Mapping[str, tuple[str, ...]]
    packages: Mapping[str, Path]
    """Top-level package → its folder."""
    package_data: Mapping[str, tuple[str, ...]]


def find_source_root() -> Path | None:
    """The repository this code runs from (an editable install or a checkout), or None."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if _is_dormant_project(candidate) else None


def _is_dormant_project(root: Path) -> bool:
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(data.get("project", {}).get("name") == "dormant")


def read_project(root: Path) -> Project:
    """Read ``root/pyproject.toml`` (Dormant's); ``ImageBuildError`` when it is not Dormant's."""
    root = Path(root)
    if not _is_dormant_project(root):
        raise ImageBuildError(f"{root} is not a Dormant repository (no pyproject.toml of project 'dormant')")
    data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    project = data["project"]
    setuptools = data.get("tool", {}).get("setuptools", {})
    find = setuptools.get("packages", {}).get("find", {})
    include = find.get("include", ["*"])
    packages: dict[str, Path] = {}
    for where in find.get("where", ["."]):
        folder = root / where
        for child in sorted(folder.iterdir()) if folder.is_dir() else ():
            if (child / "__init__.py").is_file() and any(fnmatch.fnmatchcase(child.name, p) for p in include):
                if child.name in packages:
                    raise ImageBuildError(f"package {child.name} is in {packages[child.name]} and {child}")
                packages[child.name] = child
    return Project(
        root=root,
        version=str(project["version"]),
        dependencies=tuple(project.get("dependencies", [])),
        optional={k: tuple(v) for k, v in project.get("optional-dependencies", {}).items()},
        packages=packages,
        package_data={k: tuple(v) for k, v in setuptools.get("package-data", {}).items()},
    )


def _skipped(path: Path) -> bool:
    return "__pycache__" in path.parts or path.suffix in (".pyc", ".pyo") or path.name.startswith(".")


def package_files(project: Project, package: str) -> dict[str, bytes]:
    """The files ``pip install`` puts in site-packages for ``package``: the ``.py`` files of every folder
    holding an ``__init__.py``, and the package data patterns; paths relative to site-packages."""
    top = project.packages[package]
    found: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__")
        if not (here / "__init__.py").is_file():
            continue
        for name in filenames:
            path = here / name
            if name.endswith(".py") and not _skipped(path.relative_to(top)) and path.is_file():
                found[(Path(package) / path.relative_to(top)).as_posix()] = path.read_bytes()
    for pattern in (*project.package_data.get(package, ()), *project.package_data.get("*", ())):
        for path in top.glob(pattern):
            if path.is_file() and not _skipped(path.relative_to(top)):
                found[(Path(package) / path.relative_to(top)).as_posix()] = path.read_bytes()
    return found


# ---- the third-party libraries of this environment ----------------------------------------------


@dataclass(frozen=True, slots=True)
class InstalledDistribution:
    """One distribution as installed here: its files (relative to site-packages) and their bytes."""

    name: str
    version: str
    files: Mapping[str, bytes] = field(repr=False)

    @property
    def pin(self) -> str:
        return f"{self.name}=={self.version}"


def kind_requirements(project: Project, kind: ImageKind) -> list[Requirement]:
    """The top-level requirements of ``kind``, from ``pyproject.toml``."""
    declared = [Requirement(text) for text in project.dependencies]
    if kind.requirements is not None:
        names = {canonicalize_name(n) for n in kind.requirements}
        missing = names - {canonicalize_name(r.name) for r in declared}
        if missing:
            raise ImageBuildError(f"the {kind.name} image needs {sorted(missing)}, not in pyproject.toml")
        declared = [r for r in declared if canonicalize_name(r.name) in names]
    for extra in kind.extras:
        if extra not in project.optional:
            raise ImageBuildError(f"pyproject.toml has no optional dependencies {extra!r}")
        declared += [Requirement(text) for text in project.optional[extra]]
    return declared


def _applies(requirement: Requirement, extras: Iterable[str]) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (*extras, ""))


def resolve_environment(requirements: Sequence[Requirement], *, exclude: Iterable[str] = ()) -> list[str]:
    """The distributions installed here that ``requirements`` need (markers and extras evaluated for this
    interpreter), as sorted ``name==version``; ``ImageBuildError`` when one is missing or its version
    does not satisfy a requirement."""
    skipped = {canonicalize_name(n) for n in exclude}
    extras_of: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    pending = [r for r in requirements if _applies(r, ())]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        if name in skipped:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise ImageBuildError(
                f"{requirement} is not installed in this environment ({sys.prefix}): the image takes its"
                " libraries from it (pip install -e '.[kubernetes]')"
            ) from None
        version = dist.version
        if not requirement.specifier.contains(version, prereleases=True):
            raise ImageBuildError(
                f"this environment has {name} {version}, which does not satisfy {requirement}"
            )
        known = extras_of.get(name)
        wanted = set(requirement.extras)
        if known is not None and wanted <= known:
            continue
        active = extras_of[name] = (known or set()) | wanted
        versions[name] = version
        for text in dist.requires or []:
            try:
                child = Requirement(text)
            except InvalidRequirement as exc:
                raise ImageBuildError(f"{name} {version} declares an invalid requirement {text!r}") from exc
            if _applies(child, active):
                pending.append(child)
    return sorted(f"{name}=={version}" for name, version in versions.items())


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def installed_distribution(pin: str) -> InstalledDistribution:
    """The files of the installed distribution ``name==version``, checked against its ``RECORD``: bytecode,
    console scripts (outside site-packages) and installer notes left out, ``RECORD`` written anew."""
    name, _, version = pin.partition("==")
    dist = metadata.distribution(name)
    if dist.version != version:
        raise ImageBuildError(f"{name} changed while the image was built ({dist.version}, not {version})")
    direct = dist.read_text("direct_url.json")
    if direct and json.loads(direct).get("dir_info", {}).get("editable"):
        raise ImageBuildError(f"{name} is installed in editable mode: install it from a wheel")
    if dist.files is None:
        raise ImageBuildError(f"{name} {version} has no RECORD: it was not installed from a wheel")
    root = Path(str(dist.locate_file("")))
    files: dict[str, bytes] = {}
    record_path = ""
    for entry in dist.files:
        rel = PurePosixPath(str(entry))
        if ".." in rel.parts or rel.is_absolute():
            continue  # console scripts and data outside site-packages: never run in a pod
        if "__pycache__" in rel.parts or rel.suffix in (".pyc", ".pyo"):
            continue
        if rel.parent.name.endswith(".dist-info") and rel.name in _SKIPPED_META:
            if rel.name == "RECORD":
                record_path = rel.as_posix()
            continue
        if rel.suffix == ".pth" and len(rel.parts) == 1:
            raise ImageBuildError(
                f"{name} {version} installs {rel}: .pth files are not read from PYTHONPATH"
                " (/opt/dormant/site-packages), so the image cannot hold it"
            )
        try:
            data = (root / rel).read_bytes()
        except OSError as exc:
            raise ImageBuildError(f"{name} {version}: its file {rel} cannot be read ({exc})") from None
        if entry.hash is not None:
            if entry.hash.mode != "sha256":
                raise ImageBuildError(f"{name} {version}: {rel} has a {entry.hash.mode} hash in RECORD")
            if _record_hash(data) != f"sha256={entry.hash.value}":
                raise ImageBuildError(
                    f"{name} {version}: {rel} was changed after it was installed (its RECORD hash differs):"
                    " reinstall it"
                )
        files[rel.as_posix()] = data
    if not record_path:
        raise ImageBuildError(f"{name} {version} has no RECORD entry for itself")
    lines = [f"{path},{_record_hash(data)},{len(data)}" for path, data in sorted(files.items())]
    files[record_path] = ("\n".join([*lines, f"{record_path},,"]) + "\n").encode()
    return InstalledDistribution(canonicalize_name(name), version, files)


def parse_requirements_file(text: str) -> list[str]:
    """``name==version`` lines of a requirements file (comments and blank lines skipped), normalized."""
    pins = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.partition("#")[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        try:
            Version(version.strip())
        except InvalidVersion:
            sep = ""
        if not sep or not name.strip():
            raise ImageBuildError(f"line {number} of the requirements is not name==version: {raw!r}")
        pins.append(f"{canonicalize_name(name.strip())}=={version.strip()}")
    return sorted(pins)


def check_pins(found: Sequence[str], wanted: Sequence[str]) -> None:
    """``ImageBuildError`` listing every difference between this environment and a requirements file."""
    have = dict(p.split("==", 1) for p in found)
    want = dict(p.split("==", 1) for p in wanted)
    problems = [
        f"{n}: requirements file {want[n]}, this environment {have[n]}"
        for n in sorted(have.keys() & want.keys())
        if have[n] != want[n]
    ]
    problems += [f"{n}: needed, not in the requirements file" for n in sorted(have.keys() - want.keys())]
    problems += [f"{n}: in the requirements file, not needed" for n in sorted(want.keys() - have.keys())]
    if problems:
        raise ImageBuildError("this environment differs from the requirements file: " + "; ".join(problems))


def requirements_text(kind: ImageKind, pins: Sequence[str]) -> str:
    header = (
        f"# Third-party libraries of Dormant's {kind.name} image, exactly (pip install --no-deps -r).\n"
        f"# Written by `dormant image requirements --kind {kind.name}` from the environment it ran in.\n"
    )
    return header + "".join(f"{pin}\n" for pin in pins)


# ---- the environment is the image's --------------------------------------------------------------


def python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def environment_platform() -> Platform:
    """The platform this interpreter's native libraries are for; ``ImageBuildError`` off CPython/Linux."""
    if sys.implementation.name != "cpython" or sys.platform != "linux":
        raise ImageBuildError(
            f"the image takes its libraries from this environment, which is {sys.implementation.name} on"
            f" {sys.platform}: build on CPython on Linux (a CI job, or deploy/images/*.Dockerfile)"
        )
    machine = host_platform.machine().lower()
    if machine not in _ARCHITECTURES:
        raise ImageBuildError(f"no container architecture for this machine ({machine})")
    architecture = _ARCHITECTURES[machine]
    return Platform("linux", architecture, "v8" if architecture == "arm64" else None)


def list_pins(project: Project, kind: ImageKind) -> list[str]:
    return resolve_environment(kind_requirements(project, kind), exclude=("dormant",))


# ---- the image ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BuiltContainer:
    kind: ImageKind
    image: ContainerImage
    pins: tuple[str, ...]
    target: ImageReference | None = None
    """Where it was pushed (with its first tag), once it was."""
    notes: tuple[str, ...] = ()
    """What could not be checked (a base that does not say its Python version)."""

    @property
    def digest(self) -> str:
        return self.image.digest


def kind_packages(project: Project, kind: ImageKind) -> list[str]:
    if kind.packages is None:
        return sorted(project.packages)
    missing = [p for p in kind.packages if p not in project.packages]
    if missing:
        raise ImageBuildError(f"the {kind.name} image needs packages {missing}, not in {project.root}")
    return sorted(kind.packages)


def labels_of(kind: ImageKind, project: Project) -> dict[str, str]:
    labels = {
        LABEL_TITLE: kind.title,
        LABEL_VERSION: project.version,
        LABEL_DESCRIPTION: kind.description,
        LABEL_KIND: kind.name,
        LABEL_PYTHON: python_version(),
    }
    if kind is POD:
        # What the pods of this image provide and claim by (the sidecar's --base-image and
        # --platform-interface defaults, the chart's pool.baseImages and pool.platformInterfaces).
        labels[LABEL_BASE_RUNTIME] = BASE_RUNTIME
        labels[LABEL_PLATFORM_INTERFACE] = PLATFORM_INTERFACE
    return labels


def config_change(kind: ImageKind, project: Project) -> ConfigChange:
    env = {
        "PYTHONPATH": f"/{SITE_PACKAGES}",
        "PYTHONDONTWRITEBYTECODE": "1",  # the root file system is read-only
        "PYTHONUNBUFFERED": "1",
        "HOME": "/tmp",
        "LOGNAME": "dormant",  # user 10001 has no passwd entry: getpass reads this first
    }
    if kind is POD:
        env["DORMANT_WORK_DIR"] = f"/{WORK_DIR}"
        return ConfigChange(
            env=env,
            path_prefix=(f"/{BIN_DIR}",),
            user=USER,
            entrypoint=(),
            cmd=("python", "-m", "dormant_sidecar"),
            exposed_ports=(f"{METRICS_PORT}/tcp",),
            labels=labels_of(kind, project),
        )
    return ConfigChange(
        env=env,
        path_prefix=(f"/{BIN_DIR}",),
        user=USER,
        entrypoint=("dormant",),
        cmd=("--help",),
        exposed_ports=(f"{GATEWAY_PORT}/tcp", f"{METRICS_PORT}/tcp"),
        labels=labels_of(kind, project),
    )


def dormant_layer_entries(project: Project, kind: ImageKind) -> dict[str, Entry]:
    entries: dict[str, Entry] = {}
    for package in kind_packages(project, kind):
        for rel, data in package_files(project, package).items():
            entries[f"{SITE_PACKAGES}/{rel}"] = File(data)
    if kind is POD:
        entries[WORK_DIR] = Directory(UID, GID)
    else:
        script = project.root / CLI_SCRIPT
        try:
            entries[f"{BIN_DIR}/dormant"] = File(script.read_bytes(), executable=True)
        except OSError as exc:
            raise ImageBuildError(f"the control image's command {script} cannot be read ({exc})") from None
    return entries


def build_container(
    kind_name: str,
    *,
    base: str | ImageReference,
    source: Path | None = None,
    requirements_file: Path | None = None,
    base_name: str | None = None,
    push_to: RegistryLocation | None = None,
) -> tuple[BuiltContainer, ImageRegistry]:
    """Build the ``kind_name`` image on ``base`` from the repository ``source`` (default: the one this
    code runs from) and this environment's libraries (checked against ``requirements_file`` when
    given). Returns it and the base's registry client (to copy its layers from when pushing).

    ``DORMANT_REGISTRY_USERNAME``/``_PASSWORD`` are sent to the base's registry only when it is the
    registry pushed to (``push_to``): a public base (Docker Hub) never sees them."""
    kind = _kind(kind_name)
    root = source or find_source_root()
    if root is None:
        raise ImageBuildError("name the Dormant repository to build from (--source)")
    project = read_project(root)
    platform = environment_platform()
    ref = parse_image_reference(base) if isinstance(base, str) else base
    if ref.digest is None and ref.tag is None:
        ref = ImageReference(ref.location, ref.repository, "latest")
    same = push_to is not None and push_to.host == ref.location.host and push_to.scheme == ref.location.scheme
    registry = ImageRegistry(ref.location, env_credentials=same)
    base_image = pull_base(registry, ref, platform)
    notes: list[str] = []
    base_python = base_image.env.get("PYTHON_VERSION")
    if base_python is None:
        notes.append(f"the base image does not say its Python version: it must be {python_version()}")
    elif base_python != python_version() and not base_python.startswith(python_version() + "."):
        raise ImageBuildError(
            f"the base image has Python {base_python}, this environment {python_version()}: the native"
            " libraries taken from this environment would not load there"
        )
    if ref.digest is None:
        notes.append(
            f"the base is named by its tag {ref.tag}: name it by digest to build the same image later"
        )
    pins = list_pins(project, kind)
    if requirements_file is not None:
        try:
            wanted = parse_requirements_file(requirements_file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ImageBuildError(f"cannot read {requirements_file}: {exc}") from None
        check_pins(pins, wanted)
    third_party: dict[str, Entry] = {REQUIREMENTS_FILE: File(requirements_text(kind, pins).encode())}
    for pin in pins:
        for rel, data in installed_distribution(pin).files.items():
            third_party[f"{SITE_PACKAGES}/{rel}"] = File(data)
    layers = (
        tar_layer(third_party, created_by=f"dormant image build: {len(pins)} third-party libraries"),
        tar_layer(
            dormant_layer_entries(project, kind),
            created_by=f"dormant image build: Dormant {project.version} ({kind.name})",
        ),
    )
    image = assemble(
        base_image,
        layers,
        config_change(kind, project),
        annotations={LABEL_TITLE: kind.title, LABEL_VERSION: project.version},
        base_name=base_name,
    )
    return BuiltContainer(kind, image, tuple(pins), notes=tuple(notes)), registry


def _kind(name: str) -> ImageKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ImageBuildError(f"no image kind {name!r}: {' or '.join(KINDS)}") from None


def target_location(text: str) -> RegistryLocation:
    location = parse_registry_location(text)
    if location is None:
        raise ImageBuildError(f"{text!r} is no registry: push to oci://host[:port]/prefix")
    return location


def push_container(
    built: BuiltContainer,
    target: RegistryLocation,
    tags: Sequence[str],
    *,
    base_registry: ImageRegistry,
    registry: ImageRegistry | None = None,
) -> BuiltContainer:
    """Push ``built`` to ``<target>/<repository>`` under ``tags``; the base's layers are copied from its
    registry when the target lacks them."""
    client = registry or ImageRegistry(target)
    ref = repository_reference(target, built.kind.repository, tags[0] if tags else None)
    push_image(built.image, client, ref.repository, tags, source=base_registry)
    return BuiltContainer(built.kind, built.image, built.pins, ref, built.notes)
