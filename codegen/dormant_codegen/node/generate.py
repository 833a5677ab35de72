"""``generate`` for a Node service: ``generated/`` with ``interface.json`` (base runtime
``dormant-node:1``, and ``entry``, the compiled module the runtime requires), ``asyncapi.json``,
``schemas.bundle.json`` and ``typescript/models.d.ts`` (the schemas' types, ``dormant_codegen.typescript``;
a declaration file, so ``tsc`` with ``rootDir`` ``src`` accepts the handlers'
``import type {...} from "../generated/typescript/models"`` and emits nothing for it), under the same
freshness stamp as a Python service's (``generator``). The runtime needs no other glue: it requires
``entry``, finds the class ``@service`` registered and calls each function's ``method``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..constants import GENERATED_DIR, HEADER_TEXT, JSON_HEADER_KEY, STAMP_FILE
from ..interface import dump_json, sha256_ref
from . import NODE_BASE_RUNTIME
from .inputs import node_source_hash

if TYPE_CHECKING:
    from ..generator import GenerateResult

NODE_GENERATED_FILES = (
    "interface.json",
    "asyncapi.json",
    "schemas.bundle.json",
    "typescript/models.d.ts",
)


def render_node_outputs(service_dir: Path, src_hash: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """Every generated file's bytes (by path under ``generated/``) and the interface document."""
    from ..asyncapi import build_asyncapi  # lazy: start-up time
    from ..interface import build_interface  # lazy: start-up time
    from ..typescript import render_typescript_models, type_names  # lazy: start-up time
    from .reader import read_node_service, schema_name  # lazy: start-up time

    node = read_node_service(service_dir)
    src = node.source
    schemas = src.schema_set
    defs = schemas.defs
    ts_names = type_names(list(defs))
    functions: dict[str, dict[str, Any]] = {}
    topics: dict[str, tuple[str, str]] = {}
    for fn in src.functions.values():
        names = [schema_name(schemas, use.name) or use.name for use in (fn.input, fn.output)]
        functions[fn.name] = {
            "input": schemas.standalone(names[0]),
            "output": schemas.standalone(names[1]),
            "timeout": fn.timeout,
            "roles": list(fn.roles),
            "method": fn.method,
            "inputModel": ts_names[names[0]],
            "outputModel": ts_names[names[1]],
        }
        topics[fn.name] = (names[0], names[1])
    built = build_interface(src.name, functions, src_hash, auth=src.auth)
    # The same document as a Python service's, but for the Node runtime, which requires `entry`.
    interface: dict[str, Any] = {}
    for key, value in built.items():
        interface[key] = NODE_BASE_RUNTIME if key == "baseRuntime" else value
        if key == "baseRuntime":
            interface["entry"] = node.entry
    outputs = {
        "interface.json": dump_json(interface),
        "asyncapi.json": dump_json(
            build_asyncapi(
                src.name,
                interface["interfaceHash"],
                topics,
                defs,
                auth=src.auth,
                roles={fn.name: fn.roles for fn in src.functions.values()},
            )
        ),
        "schemas.bundle.json": dump_json({JSON_HEADER_KEY: HEADER_TEXT, **schemas.bundle()}),
        "typescript/models.d.ts": render_typescript_models(defs).encode(),
    }
    return outputs, interface


def _intact(out_dir: Path, stamp: dict[str, Any], src_hash: str) -> bool:
    files = stamp.get("files")
    if (
        stamp.get("sourceHash") != src_hash
        or not isinstance(files, dict)
        or set(files) != set(NODE_GENERATED_FILES)
    ):
        return False
    for name in NODE_GENERATED_FILES:
        try:
            if sha256_ref((out_dir / name).read_bytes()) != files[name]:
                return False
        except OSError:
            return False
    return isinstance(stamp.get("service"), str) and isinstance(stamp.get("interfaceHash"), str)


def generate_node(service_dir: Path, *, check: bool = False) -> GenerateResult:
    """``generator.generate`` for a Node service (the same ``GenerateResult``, the same stamp)."""
    from ..generator import GenerateResult, _read_stamp, _write_atomic  # lazy: generator imports this

    service_dir = Path(service_dir)
    out_dir = service_dir / GENERATED_DIR
    src_hash = node_source_hash(service_dir)
    stamp = _read_stamp(out_dir)
    if stamp is not None and _intact(out_dir, stamp, src_hash):
        return GenerateResult(str(stamp["service"]), out_dir, str(stamp["interfaceHash"]), src_hash, True)

    outputs, interface = render_node_outputs(service_dir, src_hash)
    changed: list[str] = []
    for name in NODE_GENERATED_FILES:
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
    for name in changed:
        (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(out_dir / name, outputs[name])
    new_stamp = {
        JSON_HEADER_KEY: HEADER_TEXT,
        "service": service,
        "interfaceHash": ihash,
        "sourceHash": src_hash,
        "files": {name: sha256_ref(outputs[name]) for name in NODE_GENERATED_FILES},
    }
    _write_atomic(out_dir / STAMP_FILE, (json.dumps(new_stamp, indent=2) + "\n").encode())
    return GenerateResult(service, out_dir, ihash, src_hash, False, written=rel)
