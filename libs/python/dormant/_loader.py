"""Importing a service directory: its generated glue and its handler, under a package name of its own.

Every service has a top-level package ``generated`` (the handler says ``from generated.models import
User``) and a handler module with a plain top-level name (often ``service``). Imported the plain way,
with the directory on ``sys.path``, two services in one process would share whichever ``generated``
and ``service`` were imported first. ``load_app`` imports a service directory as the package
``dormant_app_<service>`` instead (``dormant_app_user_service.generated.dispatch``), and an import finder
makes the author's absolute imports of the directory's top-level modules (``generated``, ``service``,
sibling modules) return those very module objects. So the author's code stays as it is, each service
has its own models and handler module, and two services load side by side (``dormant.testing``).

The plain top-level names (``generated`` …) are bound to the service loaded last: an import that runs
inside a handler at call time, rather than at module level, sees the last service's modules when
several are loaded in one process. A runtime serves one service, so there it always sees its own.
Modules of the directory that were already imported the plain way (a test that put the directory on
``sys.path``) are adopted, not imported twice, so their classes stay the same objects; another
service's modules give their plain names up; a module of that name that belongs to no service keeps it
(the service's own module is shadowed, and a warning says so).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import keyword
import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .app import ServiceSpec

log = logging.getLogger("dormant.load")

GENERATED = "generated"
PACKAGE_PREFIX = "dormant_app_"
_NOT_SERVICE_MODULES = ("test", "conftest", "setup", "dormant")
"""Top-level names of a service directory that are never redirected: tests, tooling and the SDK."""


class LoadError(Exception):
    """The service cannot be loaded (no generated glue, an import error in its code, no ``SERVICE``)."""


@dataclass(frozen=True, slots=True)
class LoadedApp:
    """A loaded service directory: its ``ServiceSpec`` and the package its modules live in."""

    spec: ServiceSpec
    package: str
    directory: Path

    def module(self, name: str) -> ModuleType:
        """The service's module ``name`` (``"generated.models"``, ``"service"``), as the service sees it."""
        return importlib.import_module(f"{self.package}.{name}")


def load_service(service_dir: str | os.PathLike[str]) -> ServiceSpec:
    """Import ``generated.dispatch`` of ``service_dir`` and return its ``SERVICE``."""
    return load_app(service_dir).spec


def load_app(service_dir: str | os.PathLike[str]) -> LoadedApp:
    """Import ``service_dir`` as a package of its own (see the module docstring); raise ``LoadError``.

    Loading a directory again returns the modules imported the first time.
    """
    directory = Path(service_dir).resolve()
    if not (directory / GENERATED / "dispatch.py").is_file():
        raise LoadError(f"{directory} has no generated/dispatch.py: run `dormant generate` on the service")
    finder = _FINDERS.get(directory)
    if finder is None:
        finder = _AppFinder(_package_name(directory), directory, _top_level_names(directory))
        _FINDERS[directory] = finder
    _root_package(finder)
    _claim_names(finder)
    if finder in sys.meta_path:
        sys.meta_path.remove(finder)
    sys.meta_path.insert(0, finder)
    try:
        module = importlib.import_module(f"{finder.package}.{GENERATED}.dispatch")
    except Exception as exc:
        raise LoadError(f"importing the app layer failed: {type(exc).__name__}: {exc}") from exc
    spec = getattr(module, "SERVICE", None)
    if not isinstance(spec, ServiceSpec):
        raise LoadError("generated/dispatch.py does not define SERVICE as a dormant.app.ServiceSpec")
    return LoadedApp(spec, finder.package, directory)


def find_service_dir(path: str | os.PathLike[str]) -> Path:
    """The service directory (the one with ``generated/dispatch.py``) holding ``path``, or ``LoadError``."""
    start = Path(path).resolve()
    for candidate in (start, *start.parents):
        if (candidate / GENERATED / "dispatch.py").is_file():
            return candidate
    raise LoadError(f"no service directory (one with generated/dispatch.py) holds {start}")


class _AliasLoader(importlib.abc.Loader):
    """Loads a plain name (``generated.models``) as the module of the app package it stands for."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        # Replacing the sys.modules entry during exec_module is supported: the import returns it.
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _AppFinder(importlib.abc.MetaPathFinder):
    """Resolves the top-level module names of one service directory to its app package."""

    def __init__(self, package: str, directory: Path, names: frozenset[str]) -> None:
        self.package = package
        self.directory = directory
        self.names = names

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] not in self.names:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(f"{self.package}.{fullname}"))

    def __repr__(self) -> str:
        return f"<dormant app finder {self.package} for {self.directory}>"


_FINDERS: dict[Path, _AppFinder] = {}


def _package_name(directory: Path) -> str:
    """``dormant_app_<service>`` (from the generated interface, else the folder), unique in this process."""
    try:
        name = str(json.loads((directory / GENERATED / "interface.json").read_bytes())["service"])
    except (OSError, ValueError, KeyError, TypeError):
        name = directory.name
    base = PACKAGE_PREFIX + (re.sub(r"[^0-9A-Za-z_]", "_", name).lower() or "service")
    taken = {finder.package for finder in _FINDERS.values()}
    package, n = base, 1
    while package in taken:
        n += 1
        package = f"{base}_{n}"
    return package


def _top_level_names(directory: Path) -> frozenset[str]:
    """The names the service's code can import absolutely from its directory (modules and packages)."""
    names = {GENERATED}
    for entry in directory.iterdir():
        if entry.is_file() and entry.suffix == ".py":
            name = entry.stem
        elif entry.is_dir() and any(entry.glob("*.py")):
            name = entry.name
        else:
            continue
        if (
            name.isidentifier()
            and not keyword.iskeyword(name)
            and name not in sys.stdlib_module_names
            and not name.startswith(_NOT_SERVICE_MODULES)
        ):
            names.add(name)
    return frozenset(names)


def _root_package(finder: _AppFinder) -> ModuleType:
    root = sys.modules.get(finder.package)
    if root is None:
        spec = importlib.machinery.ModuleSpec(finder.package, None, is_package=True)
        spec.submodule_search_locations = [str(finder.directory)]
        root = importlib.util.module_from_spec(spec)
        sys.modules[finder.package] = root
    return root


def _claim_names(finder: _AppFinder) -> None:
    """Point the plain names of the service's modules at this service, before (and for) its import.

    A module already imported the plain way from this directory is adopted as the app package's; one
    of another service (its ``generated``, its handler module) is dropped from ``sys.modules``, so the
    finder resolves the name again. Modules of this app imported before become the plain names again.
    A module that is no service's keeps its name (taking it away could break its importers); the
    service's own module of that name is then shadowed, which is logged.
    """
    root = sys.modules[finder.package]
    prefix = finder.package + "."
    for key, module in list(sys.modules.items()):
        if key.partition(".")[0] not in finder.names or module is None:
            continue
        if _inside(module, finder.directory):
            own = prefix + key
            if own not in sys.modules:
                sys.modules[own] = module
                if "." not in key:
                    setattr(root, key, module)
        elif prefix + key in sys.modules:
            continue  # re-pointed below
        elif _of_a_service(key, module):
            del sys.modules[key]
        else:
            log.warning(
                "%s: the service's module %r is shadowed by another of that name, imported before from"
                " %s; rename one of them",
                finder.directory,
                key,
                _where(module),
            )
    for key, module in list(sys.modules.items()):
        if key.startswith(prefix) and module is not None:
            sys.modules[key[len(prefix) :]] = module


def _where(module: ModuleType) -> str | None:
    where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or ()), None)
    return where if isinstance(where, str) else None


def _inside(module: ModuleType, directory: Path) -> bool:
    where = _where(module)
    try:
        return where is not None and Path(where).resolve().is_relative_to(directory)
    except OSError:
        return False


def _of_a_service(key: str, module: ModuleType) -> bool:
    """Whether ``module`` (imported as ``key``) belongs to a service directory: one of ours or a plain one."""
    if module.__name__.startswith(PACKAGE_PREFIX):
        return True
    where = _where(module)
    if where is None:
        return False
    folder = Path(where).resolve().parent  # for a package, its own folder: one level more to its root
    levels = key.count(".") + (2 if Path(where).name == "__init__.py" else 1)
    for candidate in [folder, *folder.parents][:levels]:
        if (candidate / GENERATED / "dispatch.py").is_file():
            return True
    return False
