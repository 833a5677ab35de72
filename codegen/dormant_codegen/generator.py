"""``generate``: write (or check) a service's ``generated/`` directory, skipping the work when it is fresh.

Freshness: ``generated/.dormant-generate.json`` records the ``sourceHash`` of the inputs and a digest of
every generated file. When the inputs hash the same and every file is intact, ``generate`` returns
without reading schemas or importing the model generator. Otherwise everything is regenerated in
memory and only the files whose bytes differ are rewritten (each atomically), the stamp last.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .constants import GENERATED_DIR, HEADER_TEXT, JSON_HEADER_KEY, SCHEMAS_DIR, STAMP_FILE
from .diagnostics import CodegenError, Diagnostic
from .inputs import source_hash
from .interface import sha256_ref

GENERATED_FILES = (
    "__init__.py",
    "models.py",
    "dispatch.py",
    "interface.json",
    "asyncapi.json",
    "schemas.bundle.json",
    "client.py",
    "typescript/models.ts",
    "typescript/client.ts",
)


@dataclass(frozen=True, slots=True)
class GenerateResult:
    """What ``generate`` found and did. Paths in ``written``/``stale`` are relative to the service dir."""

    service: str
    out_dir: Path
    interface_hash: str
    source_hash: str
    reused: bool
    """True when the sourceHash matched an intact previous output: nothing was regenerated."""
    written: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    """``check=True`` only: generated files that are missing or differ from what would be generated."""

    @property
    def up_to_date(self) -> bool:
        return not self.stale and not self.written


def _read_stamp(out_dir: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((out_dir / STAMP_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _intact(out_dir: Path, stamp: dict[str, Any], src_hash: str) -> bool:
    files = stamp.get("files")
    if (
        stamp.get("sourceHash") != src_hash
        or not isinstance(files, dict)
        or set(files) != set(GENERATED_FILES)
    ):
        return False
    for name in GENERATED_FILES:
        try:
            if sha256_ref((out_dir / name).read_bytes()) != files[name]:
                return False
        except OSError:
            return False
    return isinstance(stamp.get("service"), str) and isinstance(stamp.get("interfaceHash"), str)


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def render_outputs(service_dir: Path, src_hash: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every generated file's bytes (by name) and the interface document, from a fresh read of the service."""
    from .asyncapi import build_asyncapi  # lazy: start-up time
    from .interface import build_interface, dump_json  # lazy: start-up time
    from .modelgen import generate_models  # lazy: start-up time
    from .node import is_node_service  # lazy: start-up time
    from .pyclient import PyClientFunction, render_python_client  # lazy: start-up time
    from .render import DispatchFunction, render_dispatch, render_package_init  # lazy: start-up time
    from .service import display_root, read_service  # lazy: start-up time
    from .typescript import (  # lazy: start-up time
        ClientFunction,
        render_typescript_client,
        render_typescript_models,
    )

    if is_node_service(service_dir):  # a TypeScript service: its own outputs (node.generate)
        from .node.generate import render_node_outputs  # lazy: start-up time

        return render_node_outputs(service_dir, src_hash)
    src = read_service(service_dir)
    schemas = src.schema_set
    bundle = schemas.bundle()
    root = display_root(service_dir)
    models = generate_models(bundle, f"{root}/{SCHEMAS_DIR}" if root else SCHEMAS_DIR)

    diagnostics: list[Diagnostic] = []
    interface_functions: dict[str, dict[str, Any]] = {}
    topics: dict[str, tuple[str, str]] = {}
    dispatch: list[DispatchFunction] = []
    py_client: list[PyClientFunction] = []
    ts_client: list[ClientFunction] = []
    for fn in src.functions.values():
        names: list[str] = []
        classes: list[str] = []
        for use in (fn.input, fn.output):
            name = schemas.lookup(use.name) or use.name
            cls = models.classes.get(name)
            if cls is None or cls not in models.pydantic_classes:
                diagnostics.append(
                    Diagnostic(
                        fn.path,
                        use.line,
                        use.col,
                        f"@function {fn.name!r}: schema {use.name!r} does not generate a pydantic model "
                        "(use an object or other model schema, not an enum)",
                    )
                )
            names.append(name)
            classes.append(cls or "")
        interface_functions[fn.name] = {
            "input": schemas.standalone(names[0]),
            "output": schemas.standalone(names[1]),
            "timeout": fn.timeout,
            "roles": list(fn.roles),
            "method": fn.method,
            "inputModel": classes[0],
            "outputModel": classes[1],
        }
        topics[fn.name] = (names[0], names[1])
        dispatch.append(
            DispatchFunction(fn.name, fn.method, classes[0], classes[1], float(fn.timeout), fn.roles)
        )
        py_client.append(
            PyClientFunction(fn.name, fn.method, classes[0], classes[1], float(fn.timeout), fn.roles)
        )
        ts_client.append(ClientFunction(fn.name, names[0], names[1], float(fn.timeout), fn.roles))
    if diagnostics:
        raise CodegenError(diagnostics)

    interface = build_interface(src.name, interface_functions, src_hash, auth=src.auth)
    outputs = {
        "__init__.py": render_package_init(src.name).encode(),
        "models.py": models.source.encode(),
        "dispatch.py": render_dispatch(
            src.name, src.module, src.class_name, interface["interfaceHash"], dispatch, auth=src.auth
        ).encode(),
        "interface.json": dump_json(interface),
        "asyncapi.json": dump_json(
            build_asyncapi(
                src.name,
                interface["interfaceHash"],
                topics,
                schemas.defs,
                auth=src.auth,
                roles={fn.name: fn.roles for fn in src.functions.values()},
            )
        ),
        "schemas.bundle.json": dump_json({JSON_HEADER_KEY: HEADER_TEXT, **bundle}),
        "client.py": render_python_client(src.name, interface["interfaceHash"], py_client).encode(),
        "typescript/models.ts": render_typescript_models(schemas.defs).encode(),
        "typescript/client.ts": render_typescript_client(
            src.name, interface["interfaceHash"], ts_client, list(schemas.defs)
        ).encode(),
    }
    return outputs, interface


def generate(service_dir: Path, *, check: bool = False) -> GenerateResult:
    """Generate ``service_dir/generated/`` (or, with ``check``, only report which files are stale).

    Raises ``CodegenError`` with diagnostics when the service cannot be read.
    """
    service_dir = Path(service_dir)
    from .node import is_node_service  # lazy: start-up time

    if is_node_service(service_dir):  # a TypeScript service (package.json with "dormant")
        from .node.generate import generate_node  # lazy: start-up time

        return generate_node(service_dir, check=check)
    out_dir = service_dir / GENERATED_DIR
    src_hash = source_hash(service_dir)
    stamp = _read_stamp(out_dir)
    if stamp is not None and _intact(out_dir, stamp, src_hash):
        return GenerateResult(str(stamp["service"]), out_dir, str(stamp["interfaceHash"]), src_hash, True)

    outputs, interface = render_outputs(service_dir, src_hash)
    changed: list[str] = []
    for name in GENERATED_FILES:
        try:
            current: bytes | None = (out_dir / name).read_bytes()
        except OSError:
            current = None
        if current != outputs[name]:
            changed.append(name)
    service, ihash = str(interface["service"]), str(interface["interfaceHash"])
    rel = [f"{GENERATED_DIR}/{name}" for name in changed]
    if check:
        return GenerateResult(service, out_dir, ihash, src_hash, False, stale=rel)

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in changed:
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)  # typescript/...
        _write_atomic(out_dir / name, outputs[name])
    new_stamp = {
        JSON_HEADER_KEY: HEADER_TEXT,
        "service": service,
        "interfaceHash": ihash,
        "sourceHash": src_hash,
        "files": {name: sha256_ref(outputs[name]) for name in GENERATED_FILES},
    }
    _write_atomic(out_dir / STAMP_FILE, (json.dumps(new_stamp, indent=2) + "\n").encode())
    return GenerateResult(service, out_dir, ihash, src_hash, False, written=rel)
