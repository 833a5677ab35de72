"""``build`` for a Node service: generate, compile ``src/**/*.ts`` with ``tsc`` (the Node runtime's
TypeScript, type-checked against ``@dormant/runtime``'s declarations) and pack the app layer: the
service's files with the compiled ``dist/**/*.js`` (also written to the directory's ``dist/``, which holds
nothing else after).

``tsc`` runs on a configuration of the build's own (in a temporary directory) that extends the service's
``tsconfig.json`` and fixes what the layout depends on: ``rootDir`` ``src/`` and ``outDir`` ``dist/`` (so
``src/service.ts`` becomes ``dist/service.js``, the ``entry`` of ``interface.json``),
CommonJS modules, ``@dormant/runtime`` resolved to the runtime's ``dist/index.d.ts`` and Node's types from
its ``@types``. Type errors fail the build as ``path:line:col: error: TSnnnn: ...`` diagnostics. The output
is kept in ``generated/.dormant-compile.json`` under a key of the inputs (the sources' hash, the compiler's
version and the runtime's declarations), so an unchanged service is not compiled again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..constants import GENERATED_DIR
from ..diagnostics import CodegenError, Diagnostic
from ..interface import dump_json
from ..pack import APP_MANIFEST, layer_files, pack_files
from ..service import display_root
from . import DIST_DIR, SOURCE_DIR, TSCONFIG_FILE
from .inputs import node_source_hash
from .toolchain import Toolchain, ToolchainMissing, find_toolchain

if TYPE_CHECKING:
    from dormant_layers import Store

    from ..builder import BuildResult

COMPILE_CACHE = ".dormant-compile.json"
TSC_TIMEOUT_S = 300.0
_TSC_LINE = re.compile(r"^(?P<path>.+?)\((?P<line>\d+),(?P<col>\d+)\): error (?P<code>TS\d+): (?P<msg>.*)$")
_TSC_GLOBAL = re.compile(r"^error (?P<code>TS\d+): (?P<msg>.*)$")


def _types_digest(tools: Toolchain) -> str:
    h = hashlib.sha256()
    dist = tools.runtime_dir / DIST_DIR
    for path in sorted(dist.rglob("*.d.ts")):
        h.update(path.relative_to(dist).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _compile_key(service_dir: Path, tools: Toolchain) -> str:
    version = json.loads((tools.typescript / "package.json").read_text(encoding="utf-8"))["version"]
    h = hashlib.sha256(b"dormant-node-compile/1\0")
    h.update(f"{node_source_hash(service_dir)}\0typescript {version}\0{_types_digest(tools)}\0".encode())
    return h.hexdigest()


def _tsconfig(service_dir: Path, out_dir: Path, tools: Toolchain) -> dict[str, object]:
    root = service_dir.resolve()
    return {
        "extends": str(root / TSCONFIG_FILE),
        "compilerOptions": {
            "rootDir": str(root / SOURCE_DIR),
            "outDir": str(out_dir),
            "module": "commonjs",
            "moduleResolution": "node",
            "noEmit": False,
            "noEmitOnError": True,
            "emitDeclarationOnly": False,
            "declaration": False,
            "sourceMap": False,
            "inlineSourceMap": False,
            "incremental": False,
            "composite": False,
            "experimentalDecorators": False,
            "paths": {"@dormant/runtime": [str(tools.runtime_types)]},
            "typeRoots": [str(tools.types_root)],
        },
        "include": [str(root / SOURCE_DIR / "**" / "*.ts")],
    }


def _diagnostics(output: str, service_dir: Path) -> list[Diagnostic]:
    """``tsc --pretty false`` errors (run in the service directory: paths relative to it) as diagnostics,
    paths shown as the service directory was given."""
    root = display_root(service_dir)
    resolved = service_dir.resolve()
    found: list[Diagnostic] = []
    for line in output.splitlines():
        hit = _TSC_LINE.match(line)
        if hit is not None:
            path = Path(hit["path"])
            path = path if path.is_absolute() else (resolved / path)
            try:
                rel = path.resolve().relative_to(resolved).as_posix()
                shown = f"{root}/{rel}" if root else rel
            except ValueError:
                shown = str(path)
            found.append(Diagnostic(shown, int(hit["line"]), int(hit["col"]), f"{hit['code']}: {hit['msg']}"))
            continue
        hit = _TSC_GLOBAL.match(line)
        if hit is not None:
            found.append(
                Diagnostic(
                    f"{root}/{TSCONFIG_FILE}" if root else TSCONFIG_FILE, 1, 1, f"{hit['code']}: {hit['msg']}"
                )
            )
        elif line.startswith((" ", "\t")) and found:
            last = found[-1]
            found[-1] = Diagnostic(last.path, last.line, last.col, f"{last.message} {line.strip()}")
    return found


def compile_service(service_dir: Path) -> dict[str, bytes]:
    """The compiled ``dist/**/*.js`` of the (generated) Node service, by path relative to it; from the
    cache when nothing changed. ``CodegenError`` with tsc's errors, or when the toolchain is missing."""
    service_dir = Path(service_dir)
    root = display_root(service_dir)
    try:
        tools = find_toolchain(need_runtime_types=True)
    except ToolchainMissing as exc:
        raise CodegenError([Diagnostic(root or ".", 1, 1, str(exc))]) from None
    key = _compile_key(service_dir, tools)
    cache = service_dir / GENERATED_DIR / COMPILE_CACHE
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        cached = json.loads(cache.read_bytes())
        if cached["key"] == key:
            return {rel: text.encode() for rel, text in cached["files"].items()}
    with tempfile.TemporaryDirectory(prefix="dormant-tsc-") as tmp:
        out_dir = Path(tmp) / DIST_DIR
        config = Path(tmp) / "tsconfig.json"
        config.write_text(json.dumps(_tsconfig(service_dir, out_dir, tools), indent=2), encoding="utf-8")
        try:
            done = subprocess.run(
                [tools.node, str(tools.tsc), "-p", str(config), "--pretty", "false"],
                cwd=service_dir.resolve(),
                capture_output=True,
                timeout=TSC_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise CodegenError(
                [Diagnostic(root or ".", 1, 1, f"tsc took more than {TSC_TIMEOUT_S:g} s")]
            ) from None
        output = done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")
        if done.returncode != 0:
            problems = _diagnostics(output, service_dir)
            if not problems:
                tail = " | ".join(output.strip().splitlines()[-3:])
                problems = [Diagnostic(root or ".", 1, 1, f"tsc failed ({done.returncode}): {tail}")]
            raise CodegenError(problems)
        files = {
            f"{DIST_DIR}/{path.relative_to(out_dir).as_posix()}": path.read_bytes()
            for path in sorted(out_dir.rglob("*"))
            if path.is_file()
        }
    record = {"key": key, "files": {rel: data.decode() for rel, data in files.items()}}
    tmp_cache = cache.with_name(f"{COMPILE_CACHE}.{os.getpid()}.tmp")
    try:
        tmp_cache.write_text(json.dumps(record) + "\n", encoding="utf-8")
        os.replace(tmp_cache, cache)
    except OSError:
        pass  # a read-only tree only loses the cache
    return files


def write_dist(service_dir: Path, compiled: dict[str, bytes]) -> None:
    """Make ``service_dir/dist/`` hold exactly ``compiled`` (a runtime can serve the directory as it is, and
    the developer sees what the layer holds): changed files rewritten, files tsc no longer writes removed."""
    from ..generator import _write_atomic  # lazy: generator imports the node package

    dist = Path(service_dir) / DIST_DIR
    for rel, data in compiled.items():
        path = Path(service_dir) / rel
        try:
            if path.read_bytes() == data:
                continue
        except OSError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, data)
    if dist.is_dir():
        for path in sorted(dist.rglob("*"), reverse=True):
            rel = path.relative_to(service_dir).as_posix()
            if path.is_file() and rel not in compiled:
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()


def pack_node_layer(service_dir: Path, compiled: dict[str, bytes], manifest: dict[str, object]) -> bytes:
    """The deterministic app layer: the service's files (``layer_files``) but its ``dist/``, the compiled
    files, and ``dormant-app.json``."""
    service_dir = Path(service_dir)
    files = [rel for rel in layer_files(service_dir) if not rel.startswith(f"{DIST_DIR}/")]
    if APP_MANIFEST in files:
        raise CodegenError(
            [Diagnostic(f"{service_dir}/{APP_MANIFEST}", 1, 1, f"{APP_MANIFEST} is reserved for the build")]
        )
    contents: dict[str, bytes] = {APP_MANIFEST: dump_json(manifest)}
    for rel in files:
        contents[rel] = (service_dir / rel).read_bytes()
    contents.update(compiled)
    return pack_files(contents)


_LOAD_SCRIPT = """
const [loader, appDir] = process.argv.slice(1);
let result;
try {
  const spec = require(loader).loadService(appDir);
  result = { ok: true, service: spec.name };
} catch (exc) {
  result = { ok: false, message: String(exc && exc.message ? exc.message : exc) };
}
process.stdout.write(JSON.stringify(result));
"""


def check_load(service_dir: Path, module: str) -> None:
    """Load the compiled service as the Node runtime will (its loader: ``interface.json``, ``require`` of the
    entry, the ``@service`` class made, every function's method found), so a service that cannot load fails
    here and not in a pod. It runs the service's code: for the author's machine, like ``check_import``.
    ``module`` is the source file shown in the diagnostic."""
    service_dir = Path(service_dir)
    root = display_root(service_dir)
    shown = f"{root}/{module}" if root else module
    tools = find_toolchain(need_runtime_types=True)
    loader = tools.runtime_dir / DIST_DIR / "loader.js"
    try:
        done = subprocess.run(
            [tools.node, "-e", _LOAD_SCRIPT, str(loader), str(service_dir.resolve())],
            capture_output=True,
            timeout=TSC_TIMEOUT_S,
            check=False,
        )
        result = json.loads(done.stdout)
    except subprocess.TimeoutExpired:
        raise CodegenError([Diagnostic(shown, 1, 1, "loading the service took too long")]) from None
    except ValueError:
        tail = " | ".join(done.stderr.decode(errors="replace").strip().splitlines()[-3:])
        raise CodegenError([Diagnostic(shown, 1, 1, f"loading the service failed: {tail}")]) from None
    if not result.get("ok"):
        raise CodegenError(
            [Diagnostic(shown, 1, 1, f"the Node runtime cannot load the service: {result['message']}")]
        )


def build_node(service_dir: Path, store: Store, *, import_check: bool = False) -> BuildResult:
    """``builder.build`` for a Node service: generate, compile (the type check), with ``import_check`` load
    it as the runtime will (``check_load``: it runs the service's code), pack and push."""
    from ..builder import ANNOTATION_PREFIX, BuildResult, app_manifest  # lazy: builder imports this
    from .generate import generate_node  # lazy: start-up time (generate pulls in the model generator)

    service_dir = Path(service_dir)
    generate_node(service_dir)
    compiled = compile_service(service_dir)
    write_dist(service_dir, compiled)
    interface = json.loads((service_dir / GENERATED_DIR / "interface.json").read_text(encoding="utf-8"))
    entry = str(interface.get("entry", ""))
    if entry not in compiled:
        raise CodegenError(
            [
                Diagnostic(
                    display_root(service_dir) or ".", 1, 1, f"tsc did not write {entry}, the entry module"
                )
            ]
        )
    if import_check:
        check_load(service_dir, _source_of(entry))
    layer = pack_node_layer(service_dir, compiled, app_manifest(interface))
    ref = store.push(
        interface["service"],
        layer,
        annotations={
            f"{ANNOTATION_PREFIX}.interface-hash": interface["interfaceHash"],
            f"{ANNOTATION_PREFIX}.base-runtime": interface["baseRuntime"],
            f"{ANNOTATION_PREFIX}.platform-interface": interface["platformInterface"],
        },
    )
    return BuildResult(ref=ref, interface=interface, layer_size=len(layer))


def _source_of(entry: str) -> str:
    """``dist/service.js`` -> ``src/service.ts``."""
    return f"{SOURCE_DIR}/{entry.removeprefix(DIST_DIR + '/').removesuffix('.js')}.ts"
