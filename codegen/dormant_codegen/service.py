"""``read_service``: everything codegen knows about a service directory, checked, as a ``ServiceSource``.

Combines the ``@service`` class read from the user modules with the normalized schemas, and checks
the facts that span both (exactly one service class, every named schema exists). Any problem is
raised as one ``CodegenError`` listing every diagnostic found.
"""

from __future__ import annotations

import keyword
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dormant.app import AuthMode

from .diagnostics import CodegenError, Diagnostic
from .inputs import python_sources, schema_sources
from .pysource import FunctionSource, ServiceClass, read_module
from .schemas import SchemaSet, load_schemas


@dataclass(frozen=True, slots=True)
class ServiceSource:
    """A read and checked service: name, handler class and module, functions by name, schemas by name."""

    name: str
    class_name: str
    module: str
    service_dir: Path
    functions: dict[str, FunctionSource]
    schemas: dict[str, dict[str, Any]]
    schema_set: SchemaSet
    auth: AuthMode = "required"


def display_root(service_dir: Path) -> str:
    """How paths inside ``service_dir`` are shown: relative to it as the caller gave it."""
    text = os.fspath(service_dir)
    return "" if text in ("", ".") else text.rstrip("/")


def _shown(root: str, rel: str) -> str:
    return f"{root}/{rel}" if root else rel


def _ordered(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: (d.path, d.line, d.col))


def read_service(service_dir: Path) -> ServiceSource:
    """Read ``service_dir`` (modules via ``ast``, ``schemas/*.json``); raise ``CodegenError`` on problems."""
    service_dir = Path(service_dir)
    root = display_root(service_dir)
    if not service_dir.is_dir():
        what = "is not a directory" if service_dir.exists() else "does not exist"
        raise CodegenError([Diagnostic(root or ".", 1, 1, f"{service_dir} {what}: give a service directory")])
    diagnostics: list[Diagnostic] = []
    services: list[ServiceClass] = []
    for rel in python_sources(service_dir):
        try:
            text = (service_dir / rel).read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            diagnostics.append(Diagnostic(_shown(root, rel), 1, 1, f"not UTF-8: {exc.reason}"))
            continue
        found, problems = read_module(_shown(root, rel), rel, text)
        services.extend(found)
        diagnostics.extend(problems)

    schemas = load_schemas(service_dir, root, schema_sources(service_dir))
    diagnostics.extend(schemas.diagnostics)

    if not services:
        # An unparsable module or a rejected @service name already explains the absence.
        if not diagnostics or all(d.path.endswith(".json") for d in diagnostics):
            diagnostics.append(
                Diagnostic(
                    root or ".",
                    1,
                    1,
                    'no class decorated with @service("name") in any *.py module of the service',
                )
            )
        raise CodegenError(_ordered(diagnostics))
    first = services[0]
    for extra in services[1:]:
        diagnostics.append(
            Diagnostic(
                extra.path,
                extra.line,
                extra.col,
                f"a second @service class {extra.class_name!r} ({extra.name!r}); "
                f"{first.class_name!r} at {first.path}:{first.line} is already the service class",
            )
        )
    if not all(part.isidentifier() and not keyword.iskeyword(part) for part in first.module.split(".")):
        diagnostics.append(
            Diagnostic(
                first.path,
                first.line,
                first.col,
                f"the service class lives in module {first.module!r}, which cannot be imported: "
                "rename the file to a valid Python module name",
            )
        )
    for fn in first.functions.values():
        for use in (fn.input, fn.output):
            # A schema file that failed to parse may well hold the missing name: say nothing then.
            if schemas.lookup(use.name) is None and not schemas.unreadable:
                diagnostics.append(
                    Diagnostic(
                        fn.path,
                        use.line,
                        use.col,
                        f"@function {fn.name!r}: no schema named {use.name!r} in schemas/*.json",
                    )
                )
    if diagnostics:
        raise CodegenError(_ordered(diagnostics))
    return ServiceSource(
        name=first.name,
        class_name=first.class_name,
        module=first.module,
        service_dir=service_dir,
        functions=first.functions,
        schemas=schemas.defs,
        schema_set=schemas,
        auth=first.auth,
    )
