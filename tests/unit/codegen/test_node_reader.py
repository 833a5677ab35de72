"""Reading and generating TypeScript (Node) services: the records ``read_node_service`` makes from
``src/**/*.ts`` (TypeScript's parser in a ``node`` child), its ``path:line:col: error:`` diagnostics, the
``generated/`` it writes, and ``build``'s compile (tsc against ``@dormant/runtime``) into the app layer.

Needs ``node`` and ``runtimes/node`` installed (``npm ci``); the build tests also its ``dist/`` (``npm run
build``), as ``deploy/bootstrap.sh`` leaves them.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import textwrap
from pathlib import Path

import pytest

from dormant_codegen import CodegenError, build, generate
from dormant_codegen.node import is_node_service
from dormant_codegen.node.reader import read_node_service
from dormant_codegen.node.toolchain import find_toolchain
from dormant_layers import open_store

ROOT = Path(__file__).resolve().parents[3]

SCHEMAS = """\
{
  "Ping": {"type": "object", "properties": {"text": {"type": "string", "required": true}},
           "additionalProperties": false},
  "Pong": {"type": "object", "properties": {"ok": {"type": "boolean", "required": true}}},
  "user-id": {"type": "object", "properties": {"id": {"type": "string"}}}
}
"""

SERVICE = """\
import { Context, fn, service } from "@dormant/runtime";
import type { Ping, Pong, UserId } from "../generated/typescript/models";

@service("pinger")
export class Pinger {
  @fn("ping", { timeout: 5, roles: ["b", "a", "b"] })
  async ping(input: Ping, ctx: Context): Promise<Pong> {
    return { ok: input.text.length > 0 };
  }

  @fn("who")
  async whoIs(input: UserId): Promise<Pong> {
    return { ok: true };
  }

  helper(): number {
    return 1;
  }
}
"""

PACKAGE = '{"name": "pinger", "private": true, "dormant": {}}\n'
TSCONFIG = '{"compilerOptions": {"target": "ES2022", "strict": true}}\n'


def make_service(
    root: Path,
    service: str = SERVICE,
    *,
    package: str = PACKAGE,
    schemas: str = SCHEMAS,
    extra: dict[str, str] | None = None,
) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "schemas").mkdir()
    (root / "package.json").write_text(package)
    (root / "tsconfig.json").write_text(TSCONFIG)
    (root / "schemas" / "ping.json").write_text(schemas)
    (root / "src" / "service.ts").write_text(textwrap.dedent(service))
    for rel, text in (extra or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def errors_of(service_dir: Path) -> list[str]:
    with pytest.raises(CodegenError) as info:
        generate(service_dir)
    assert not (service_dir / "generated").exists(), "nothing is written on error"
    return [str(d) for d in info.value.diagnostics]


def test_detection(tmp_path: Path) -> None:
    node = make_service(tmp_path / "node")
    assert is_node_service(node)
    assert not is_node_service(ROOT / "examples" / "greeter")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "package.json").write_text('{"name": "not-dormant"}')
    assert not is_node_service(plain)


def test_records(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "svc")
    node = read_node_service(svc)
    src = node.source
    assert (src.name, src.class_name, src.module, src.auth) == (
        "pinger",
        "Pinger",
        "src/service.ts",
        "required",
    )
    assert node.entry == "dist/service.js"
    assert list(src.functions) == ["ping", "who"]
    ping, who = src.functions["ping"], src.functions["who"]
    assert (ping.method, ping.timeout, ping.roles) == ("ping", 5, ("a", "b"))
    line = SERVICE.splitlines()[6]
    assert (ping.input.name, ping.input.line, ping.input.col) == ("Ping", 7, line.index("Ping") + 1)
    assert (ping.output.name, ping.output.line, ping.output.col) == ("Pong", 7, line.index("Pong") + 1)
    assert (ping.path, ping.line, ping.col) == (f"{svc}/src/service.ts", 6, 3)
    # A method name differing from the function name; the default timeout; a type named after a schema
    # whose name is not an identifier (user-id -> UserId in models.d.ts); ctx may be left out.
    assert (who.method, who.timeout, who.roles, who.input.name) == ("whoIs", 30, (), "UserId")


def test_generate_writes_node_outputs(tmp_path: Path) -> None:
    svc = make_service(tmp_path / "svc")
    result = generate(svc)
    assert sorted(result.written) == [
        "generated/asyncapi.json",
        "generated/interface.json",
        "generated/schemas.bundle.json",
        "generated/typescript/models.d.ts",
    ]
    interface = json.loads((svc / "generated" / "interface.json").read_text())
    assert interface["baseRuntime"] == "dormant-node:1"
    assert interface["entry"] == "dist/service.js"
    assert interface["functions"]["who"]["method"] == "whoIs"
    assert interface["functions"]["who"]["input"]["properties"] == {"id": {"type": "string"}}
    assert (interface["functions"]["who"]["inputModel"], interface["functions"]["ping"]["roles"]) == (
        "UserId",
        ["a", "b"],
    )
    models = (svc / "generated" / "typescript" / "models.d.ts").read_text()
    assert models.startswith("// Generated by `dormant generate`")
    assert "export interface UserId {" in models
    # Fresh: nothing rewritten; a changed source is stale for --check and regenerated after.
    assert generate(svc).reused
    service_ts = svc / "src" / "service.ts"
    service_ts.write_text(service_ts.read_text().replace("timeout: 5", "timeout: 7"))
    assert generate(svc, check=True).stale == ["generated/interface.json", "generated/asyncapi.json"]
    assert generate(svc).written == ["generated/interface.json", "generated/asyncapi.json"]


def test_conformance_twins_share_schemas_and_interface() -> None:
    python = ROOT / "tests" / "fixtures" / "services" / "conformance"
    node = ROOT / "tests" / "fixtures" / "services" / "conformance-node"
    assert (node / "schemas" / "conformance.json").read_bytes() == (
        python / "schemas" / "conformance.json"
    ).read_bytes()
    assert generate(node, check=True).stale == []
    py_interface = json.loads((python / "generated" / "interface.json").read_text())
    node_interface = json.loads((node / "generated" / "interface.json").read_text())
    assert node_interface["interfaceHash"] == py_interface["interfaceHash"]
    assert node_interface["baseRuntime"] == "dormant-node:1"


def test_one_file_of_mistakes(tmp_path: Path) -> None:
    bad = """\
    import { Context, fn, service } from "@dormant/runtime";
    import type { Ping, Pong } from "../generated/typescript/models";

    @service("pinger")
    export class Pinger {
      @fn("a", { timeout: 0 })
      async a(input: Ping): Promise<Pong> { return { ok: true }; }

      @fn("b", { retries: 3 })
      async b(input: Ping): Promise<Pong> { return { ok: true }; }

      @fn("c")
      async c(input: Ping): Pong { return { ok: true }; }

      @fn("d")
      async d(): Promise<Pong> { return { ok: true }; }

      @fn("e")
      async e(input: Missing): Promise<Array<Pong>> { return []; }

      @fn()
      async f(input: Ping): Promise<Pong> { return { ok: true }; }

      @fn(NAME)
      async g(input: Ping): Promise<Pong> { return { ok: true }; }

      @fn("h", { roles: ["ok", "not ok"] })
      async h(input: Ping): Promise<Pong> { return { ok: true }; }

      @fn("dup") async dup1(input: Ping): Promise<Pong> { return { ok: true }; }
      @fn("dup") async dup2(input: Ping): Promise<Pong> { return { ok: true }; }

      @fn("s")
      static async s(input: Ping): Promise<Pong> { return { ok: true }; }

      @fn("p")
      async #p(input: Ping): Promise<Pong> { return { ok: true }; }

      @fn("i")
      async i(input): Promise<Pong> { return { ok: true }; }

      @fn("v1")
      async v(input: Ping): Promise<Pong> { return { ok: true }; }
      @fn("m") async m(input: Missing): Promise<Pong> { return { ok: true }; }
    }

    @service("second")
    class Second {}
    """
    svc = make_service(tmp_path / "svc", bad)
    shown = f"{svc}/src/service.ts"
    assert errors_of(svc) == [
        f"{shown}:6:23: error: @fn 'a': timeout must be 1 to 900 seconds",
        f"{shown}:9:14: error: @fn does not take option 'retries'",
        f"{shown}:13:25: error: @fn 'c': the return type must be Promise<SchemaName>, not 'Pong'",
        f"{shown}:16:9: error: @fn 'd': d() must take (input: Schema, ctx: Context)",
        f"{shown}:19:36: error: @fn 'e': cannot tell the output schema from 'Array<Pong>'; "
        "give Promise<...> a schema type name",
        f'{shown}:21:3: error: @fn needs a name: @fn("...")',
        f"{shown}:24:7: error: the @fn name must be a string literal",
        f"{shown}:27:21: error: @fn 'h': invalid role 'not ok': use letters, digits and _ . : / -, "
        "at most 128 characters",
        f"{shown}:31:3: error: duplicate function name 'dup' (first at line 30)",
        f"{shown}:34:16: error: @fn 's': method 's' must not be static",
        f"{shown}:37:9: error: @fn 'p': the method needs a plain public name, not #p",
        f"{shown}:40:11: error: @fn 'i': annotate the input parameter with a schema type",
        f"{shown}:42:7: error: invalid function name 'v1': use [A-Za-z][A-Za-z0-9_]*, not v<digits>",
        f"{shown}:44:27: error: @fn 'm': no schema named 'Missing' in schemas/*.json",
        f"{shown}:47:1: error: a second @service class 'Second' ('second'); 'Pinger' at {shown}:4 "
        "is already the service class",
    ]


def test_service_level_mistakes(tmp_path: Path) -> None:
    svc = make_service(
        tmp_path / "auth", SERVICE.replace('@service("pinger")', '@service("pinger", { auth: "no" })')
    )
    assert errors_of(svc) == [
        f"{svc}/src/service.ts:4:28: error: @service auth must be one of 'required', 'optional', 'off'"
    ]
    svc = make_service(tmp_path / "name", SERVICE.replace('@service("pinger")', '@service("Pinger!")'))
    assert errors_of(svc) == [
        f"{svc}/src/service.ts:4:10: error: invalid service name 'Pinger!': use lowercase letters, digits "
        "and dashes, at most 64 characters"
    ]
    off = SERVICE.replace('@service("pinger")', '@service("pinger", { auth: "off" })')
    svc = make_service(tmp_path / "off", off)
    assert errors_of(svc) == [
        f"{svc}/src/service.ts:6:3: error: @fn 'ping': roles need authentication; "
        'the service has auth "off"'
    ]
    svc = make_service(tmp_path / "none", "export const x = 1;\n")
    assert errors_of(svc) == [
        f'{svc}:1:1: error: no class decorated with @service("name") in any src/**/*.ts module of the service'
    ]
    svc = make_service(tmp_path / "syntax", '@service("x")\nexport class {\n')
    assert errors_of(svc) == [f"{svc}/src/service.ts:3:1: error: invalid TypeScript: '}}' expected."]


def test_package_mistakes(tmp_path: Path) -> None:
    package = json.dumps(
        {
            "name": "x",
            "dormant": {"baseRuntime": "dormant-node:2", "port": 1},
            "dependencies": {"lodash": "4"},
        }
    )
    svc = make_service(tmp_path / "pkg", package=package)
    shown = f"{svc}/package.json"
    assert errors_of(svc) == [
        f"{shown}:1:1: error: \"dormant\" does not take 'port'",
        f"{shown}:1:1: error: \"dormant.baseRuntime\" must be 'dormant-node:1', not 'dormant-node:2'",
        f"{shown}:1:1: error: \"dependencies\": 'lodash' cannot be used: a Node service may depend only on "
        "@dormant/runtime (the runtime provides it; app layers carry no node_modules)",
    ]
    svc = make_service(tmp_path / "marker", package='{"dormant": true}')
    assert errors_of(svc) == [f'{svc}/package.json:1:1: error: "dormant" must be an object, e.g. {{}}']


def _runtime_built() -> None:
    tools = find_toolchain()
    if not tools.runtime_types.is_file():
        pytest.fail(f"{tools.runtime_types} is missing: `cd runtimes/node && npm ci && npm run build`")


def test_build_compiles_into_the_layer(tmp_path: Path) -> None:
    _runtime_built()
    svc = make_service(tmp_path / "svc")
    (svc / "dist").mkdir()
    (svc / "dist" / "stale.js").write_text("old output\n")
    store = open_store(tmp_path / "layers")
    result = build(svc, store, import_check=True)
    assert result.interface["baseRuntime"] == "dormant-node:1"
    layer = Path(tmp_path / "layers")
    blob = next(
        p for p in (layer / "blobs" / "sha256").iterdir() if p.name == result.ref.layer_digest.split(":")[1]
    )
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob.read_bytes()))) as tar:
        names = tar.getnames()
        compiled = tar.extractfile("dist/service.js")
        assert compiled is not None
        js = compiled.read().decode()
    assert "dist/stale.js" not in names
    assert {"dormant-app.json", "generated/interface.json", "schemas/ping.json", "src/service.ts"} <= set(
        names
    )
    assert 'require("@dormant/runtime")' in js
    assert json.loads(json.dumps(sorted(p.name for p in (svc / "dist").iterdir()))) == ["service.js"]
    # The same inputs give the same layer (and come from the compile cache).
    assert build(svc, store).ref.layer_digest == result.ref.layer_digest


def test_type_errors_fail_the_build(tmp_path: Path) -> None:
    _runtime_built()
    wrong = SERVICE.replace("return { ok: input.text.length > 0 };", "return { ok: input.nope };")
    svc = make_service(tmp_path / "svc", wrong)
    with pytest.raises(CodegenError) as info:
        build(svc, open_store(tmp_path / "layers"))
    assert [str(d) for d in info.value.diagnostics] == [
        f"{svc}/src/service.ts:8:24: error: TS2339: Property 'nope' does not exist on type 'Ping'."
    ]


def test_load_check_runs_the_decorators(tmp_path: Path) -> None:
    _runtime_built()
    throws = SERVICE.replace(
        "export class Pinger {", "export class Pinger {\n  constructor() { throw new Error('no way'); }"
    )
    svc = make_service(tmp_path / "svc", throws)
    store = open_store(tmp_path / "layers")
    with pytest.raises(CodegenError) as info:
        build(svc, store, import_check=True)
    (problem,) = info.value.diagnostics
    assert problem.path == f"{svc}/src/service.ts"
    assert "the Node runtime cannot load the service" in problem.message and "no way" in problem.message
    build(svc, store, import_check=False)  # compiles: the constructor only throws when run
