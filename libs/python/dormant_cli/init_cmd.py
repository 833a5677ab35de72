"""``dormant init NAME``: a new service directory that builds, serves and passes its own unit test.

Writes a handler class (``service.py``), its schemas (``schemas/hello.json``), a unit test that calls
the handler in process (``tests/test_<name>.py``, through ``dormant.testing.TestClient``) and a README,
from the templates in ``dormant_cli/templates/init`` (``{{service}}`` and ``{{class_name}}`` are filled
in), then runs ``dormant generate`` so ``generated/`` exists and the test passes at once. It refuses a
name the ``@service`` decorator would refuse and a directory that already holds something.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from dormant.decorators import is_valid_service_name

from .common import Subparsers, add_command, fail

TEMPLATES = ("dormant_cli", "templates/init")
TEMPLATE_SUFFIX = ".tmpl"


class InitError(Exception):
    """Why the skeleton cannot be written (one line, for ``error: ...``)."""


def register(sub: Subparsers) -> None:
    p = add_command(
        sub,
        "init",
        help="create a service skeleton (handler, schema, unit test) that builds and passes its test",
        description="Create a new service directory: a handler class, its JSON schemas, the generated "
        "models and a unit test that passes, ready for `dormant dev DIR --watch`.",
        example="dormant init hello-service\n"
        "python -m pytest hello-service/tests\n"
        "dormant dev hello-service --watch",
    )
    p.add_argument(
        "name", help="the service name: lowercase letters, digits and dashes (at most 64), e.g. hello-service"
    )
    p.add_argument(
        "--dir", type=Path, default=None, help="where to create it (default: ./NAME); must be absent or empty"
    )
    p.set_defaults(run=run_init)


def class_name(service: str) -> str:
    """The handler class for ``service``: ``hello-service`` -> ``HelloService``."""
    name = "".join(part[:1].upper() + part[1:] for part in service.split("-"))
    return name if name[:1].isalpha() else f"Service{name}"


def unit_test_file(service: str) -> str:
    """The unit test's file name: ``hello-service`` -> ``test_hello_service.py``."""
    return f"test_{service.replace('-', '_')}.py"


def _templates() -> list[tuple[str, Traversable]]:
    """(relative path without the suffix, template) for every template file."""
    package, folder = TEMPLATES
    root = resources.files(package).joinpath(folder)
    found: list[tuple[str, Traversable]] = []
    todo: list[tuple[str, Traversable]] = [("", root)]
    while todo:
        prefix, here = todo.pop()
        for entry in here.iterdir():
            rel = f"{prefix}{entry.name}"
            if entry.is_dir():
                todo.append((f"{rel}/", entry))
            elif entry.name.endswith(TEMPLATE_SUFFIX):
                found.append((rel.removesuffix(TEMPLATE_SUFFIX), entry))
    return sorted(found, key=lambda item: item[0])


def render(text: str, service: str) -> str:
    return text.replace("{{service}}", service).replace("{{class_name}}", class_name(service))


def create_skeleton(service: str, target: Path) -> list[Path]:
    """Write the skeleton of ``service`` into ``target`` (absent or empty); the files written.

    Raises ``InitError`` for an invalid name or a directory that is not empty.
    """
    if not is_valid_service_name(service):
        raise InitError(
            f"invalid service name {service!r}: use lowercase letters, digits and dashes, starting and "
            "ending with a letter or digit (at most 64), e.g. hello-service"
        )
    if target.exists() and not target.is_dir():
        raise InitError(f"{target} exists and is not a directory")
    if target.is_dir() and any(target.iterdir()):
        raise InitError(f"{target} is not empty; choose a new directory with --dir")
    written: list[Path] = []
    for rel, template in _templates():
        if rel == "tests/test_service.py":
            rel = f"tests/{unit_test_file(service)}"
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(template.read_text(encoding="utf-8"), service), encoding="utf-8")
        written.append(path)
    return written


def run_init(args: argparse.Namespace) -> int:
    from dormant_codegen import CodegenError, generate  # lazy: start-up time

    target: Path = args.dir if args.dir is not None else Path(args.name)
    try:
        written = create_skeleton(args.name, target)
    except InitError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write {target}: {exc.strerror or exc}")
    try:
        generate(target)
    except CodegenError as exc:  # the templates are tested; this means the generator changed under them
        for diagnostic in exc.diagnostics:
            print(diagnostic, file=sys.stderr)
        return fail(f"created {target}, but `dormant generate {target}` failed")
    shown = [str(p.relative_to(target)) for p in written]
    print(f"created {args.name} in {target}: {', '.join(shown)}, generated/")
    print(
        "next:\n"
        f"  python -m pytest {target / 'tests'}\n"
        f"  dormant dev {target} --watch     # serve it; every saved edit goes live\n"
        f'  dormant call {args.name}.hello \'{{"name": "Ann"}}\''
    )
    return 0
