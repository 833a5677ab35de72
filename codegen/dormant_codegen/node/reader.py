"""Reading a Node service: ``read_node_service`` gives the ``ServiceSource`` the Python reader gives, from
``src/**/*.ts`` parsed by TypeScript's parser (``read_sources.js`` in a ``node`` child process: user code is
never run or type-checked here) and ``schemas/*.json``.

It finds the one ``@service("name", { auth })`` class and its ``@fn("name", { timeout, roles })`` methods;
a function's input schema is the type name of the method's first parameter, its output schema the ``X``
of the declared ``Promise<X>`` return type (``X`` or ``models.X``). Mistakes are ``path:line:col: error:``
diagnostics, checked with the rules the Python decorators follow (names, timeouts, roles, auth modes).
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dormant.app import AUTH_MODES, MAX_TIMEOUT_S, MIN_TIMEOUT_S, AuthMode
from dormant.decorators import ROLE_RULE, is_valid_function_name, is_valid_role, is_valid_service_name

from ..constants import DEFAULT_TIMEOUT_S, SCHEMAS_DIR
from ..diagnostics import CodegenError, Diagnostic
from ..inputs import schema_sources
from ..pysource import FunctionSource, SchemaUse
from ..schemas import SchemaSet, load_schemas
from ..service import ServiceSource, display_root
from . import DIST_DIR, MARKER_KEY, NODE_BASE_RUNTIME, PACKAGE_FILE, SOURCE_DIR, TSCONFIG_FILE
from .inputs import typescript_sources
from .toolchain import ToolchainMissing, find_toolchain

SDK_MODULE = "@dormant/runtime"
READ_TIMEOUT_S = 120.0
_SCRIPT = Path(__file__).with_name("read_sources.js")


@dataclass(frozen=True, slots=True)
class NodeService:
    """A read and checked Node service: ``source`` as for Python services, plus where its class lives."""

    source: ServiceSource
    entry: str
    """The compiled module holding the service class, relative to the service dir (``dist/service.js``)."""
    base_runtime: str = NODE_BASE_RUNTIME


def schema_name(schemas: SchemaSet, written: str) -> str | None:
    """The schema a TypeScript type name stands for: the schema of that name, else the one whose
    generated type has that name (``user-id`` is the type ``UserId`` in ``models.ts``)."""
    from ..typescript import type_names  # lazy: start-up time

    found = schemas.lookup(written)
    if found is not None:
        return found
    by_type = {ts: name for name, ts in type_names(list(schemas.defs)).items()}
    return by_type.get(written)


def _shown(root: str, rel: str) -> str:
    return f"{root}/{rel}" if root else rel


def read_facts(files: dict[str, str]) -> list[dict[str, Any]]:
    """``read_sources.js`` over ``files`` (display path -> text): per file its syntax errors, imports and
    classes. ``ToolchainMissing`` without node or TypeScript; ``RuntimeError`` when the reader fails."""
    tools = find_toolchain()
    request = json.dumps({"files": [{"path": p, "text": t} for p, t in files.items()]})
    try:
        done = subprocess.run(
            [tools.node, str(_SCRIPT), str(tools.typescript)],
            input=request.encode(),
            capture_output=True,
            timeout=READ_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the TypeScript reader took more than {READ_TIMEOUT_S:g} s") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"the TypeScript reader failed: {' | '.join(tail) or done.returncode}")
    result: list[dict[str, Any]] = json.loads(done.stdout)["files"]
    return result


@dataclass(slots=True)
class _Class:
    name: str
    class_name: str
    rel: str
    path: str
    line: int
    col: int
    auth: AuthMode
    functions: dict[str, FunctionSource]


class _Names:
    """How ``service``/``fn`` are spelled in one file, following its imports of ``@dormant/runtime``."""

    def __init__(self, imports: dict[str, Any]) -> None:
        self.direct: dict[str, str] = {
            local: name for local, name in imports["names"].items() if name in ("service", "fn")
        }
        self.namespaces: set[str] = set(imports["namespaces"])
        if not self.direct and not self.namespaces:
            self.direct = {"service": "service", "fn": "fn"}

    def kind(self, deco: dict[str, Any]) -> str | None:
        callee, namespace = deco["callee"], deco["namespace"]
        if callee is None:
            return None
        if namespace is None:
            return self.direct.get(callee)
        return callee if namespace in self.namespaces and callee in ("service", "fn") else None


class _FileReader:
    def __init__(self, display: str, rel: str) -> None:
        self.display = display
        self.rel = rel
        self.diagnostics: list[Diagnostic] = []

    def error(self, at: dict[str, Any], message: str) -> None:
        self.diagnostics.append(Diagnostic(self.display, int(at["line"]), int(at["col"]), message))

    def name_arg(self, deco: dict[str, Any], what: str) -> tuple[str, dict[str, Any]] | None:
        if not deco["called"] or not deco["args"]:
            self.error(deco, f'{what} needs a name: {what}("...")')
            return None
        node = deco["args"][0]
        if node["kind"] != "string":
            self.error(node, f"the {what} name must be a string literal")
            return None
        return str(node["value"]), node

    def options(
        self, deco: dict[str, Any], what: str, allowed: tuple[str, ...], example: str
    ) -> dict[str, dict[str, Any]] | None:
        args = deco["args"]
        if len(args) > 2:
            self.error(args[2], f"{what} takes a name and an options object, nothing more")
            return None
        if len(args) < 2:
            return {}
        node = args[1]
        if node["kind"] != "object":
            self.error(node, f"{what} options must be an object literal, e.g. {example}")
            return None
        props: dict[str, dict[str, Any]] = {}
        for prop in node["props"]:
            if prop["key"] not in allowed:
                self.error(prop, f"{what} does not take option {prop['key']!r}")
                return None
            props[prop["key"]] = prop["value"]
        return props

    def read(self, facts: dict[str, Any]) -> list[_Class]:
        names = _Names(facts["imports"])
        found: list[_Class] = []
        for cls in facts["classes"]:
            for deco in cls["decorators"]:
                kind = names.kind(deco)
                if kind == "fn":
                    self.error(deco, "@fn goes on a method of the @service class, not on a class")
                if kind != "service":
                    continue
                literal = self.name_arg(deco, "@service")
                if literal is None:
                    continue
                svc_name, name_node = literal
                if not is_valid_service_name(svc_name):
                    self.error(
                        name_node,
                        f"invalid service name {svc_name!r}: use lowercase letters, digits and "
                        "dashes, at most 64 characters",
                    )
                    continue
                auth = self._auth(deco)
                if auth is None:
                    continue
                if cls["name"] is None:
                    self.error(deco, "the @service class needs a name")
                    continue
                svc = _Class(
                    svc_name, cls["name"], self.rel, self.display, deco["line"], deco["col"], auth, {}
                )
                self._functions(cls, names, svc)
                found.append(svc)
            for member in cls["members"]:
                if not any(names.kind(d) == "service" for d in cls["decorators"]):
                    for deco in member["decorators"]:
                        if names.kind(deco) == "fn":
                            self.error(deco, f"@fn on a method of {cls['name']!r}, which has no @service")
        return found

    def _auth(self, deco: dict[str, Any]) -> AuthMode | None:
        options = self.options(deco, "@service", ("auth",), '{ auth: "optional" }')
        if options is None:
            return None
        node = options.get("auth")
        if node is None:
            return "required"
        for mode in AUTH_MODES:
            if node["kind"] == "string" and node["value"] == mode:
                return mode
        self.error(node, f"@service auth must be one of {', '.join(repr(m) for m in AUTH_MODES)}")
        return None

    def _functions(self, cls: dict[str, Any], names: _Names, svc: _Class) -> None:
        for member in cls["members"]:
            for deco in member["decorators"]:
                if names.kind(deco) == "service":
                    self.error(deco, "@service goes on the class, not on a member")
                if names.kind(deco) != "fn":
                    continue
                fn = self._function(member, deco)
                if fn is None:
                    continue
                if fn.roles and svc.auth == "off":
                    self.error(
                        deco, f'@fn {fn.name!r}: roles need authentication; the service has auth "off"'
                    )
                    continue
                if fn.name in svc.functions:
                    first = svc.functions[fn.name]
                    self.error(deco, f"duplicate function name {fn.name!r} (first at line {first.line})")
                    continue
                svc.functions[fn.name] = fn

    def _function(self, member: dict[str, Any], deco: dict[str, Any]) -> FunctionSource | None:
        literal = self.name_arg(deco, "@fn")
        if literal is None:
            return None
        name, name_node = literal
        ok = True
        if not is_valid_function_name(name):
            self.error(name_node, f"invalid function name {name!r}: use [A-Za-z][A-Za-z0-9_]*, not v<digits>")
            ok = False
        if member["kind"] != "method":
            self.error(member, f"@fn {name!r}: {member['name']} is not a method")
            return None
        if not member["plain"]:
            self.error(member, f"@fn {name!r}: the method needs a plain public name, not {member['name']}")
            ok = False
        if member["static"]:
            self.error(member, f"@fn {name!r}: method {member['name']!r} must not be static")
            ok = False
        options = self.options(deco, "@fn", ("timeout", "roles"), '{ timeout: 5, roles: ["admin"] }')
        if options is None:
            return None
        params = member["params"]
        in_use: SchemaUse | None = None
        if not params:
            self.error(member, f"@fn {name!r}: {member['name']}() must take (input: Schema, ctx: Context)")
        elif params[0]["type"] is None:
            self.error(params[0], f"@fn {name!r}: annotate the input parameter with a schema type")
        else:
            in_use = self._schema(name, "input", params[0]["type"])
        out_use: SchemaUse | None = None
        returns = member["returns"]
        if returns is None:
            self.error(member, f"@fn {name!r}: declare the return type as Promise<SchemaName>")
        elif returns["name"] != "Promise" or len(returns["args"]) != 1:
            self.error(
                returns,
                f"@fn {name!r}: the return type must be Promise<SchemaName>, not {returns['text']!r}",
            )
        else:
            out_use = self._schema(name, "output", returns["args"][0])
        timeout = self._timeout(name, options.get("timeout"))
        roles = self._roles(name, options.get("roles"))
        if not ok or in_use is None or out_use is None or timeout is None or roles is None:
            return None
        return FunctionSource(
            name=name,
            method=str(member["name"]),
            input=in_use,
            output=out_use,
            timeout=timeout,
            roles=roles,
            path=self.display,
            line=int(deco["line"]),
            col=int(deco["col"]),
        )

    def _schema(self, fn: str, role: str, ref: dict[str, Any]) -> SchemaUse | None:
        if ref["name"] is None or ref["args"]:
            where = "the input parameter" if role == "input" else "Promise<...>"
            self.error(
                ref,
                f"@fn {fn!r}: cannot tell the {role} schema from {ref['text']!r}; "
                f"give {where} a schema type name",
            )
            return None
        return SchemaUse(str(ref["name"]), int(ref["line"]), int(ref["col"]))

    def _roles(self, fn: str, node: dict[str, Any] | None) -> tuple[str, ...] | None:
        if node is None:
            return ()
        items = node.get("items") if node["kind"] == "array" else None
        names = [str(i["value"]) for i in items or () if i["kind"] == "string"]
        if items is None or len(names) != len(items):
            self.error(node, f'@fn {fn!r}: roles must be an array of string literals, e.g. ["admin"]')
            return None
        bad = [n for n in names if not is_valid_role(n)]
        if bad:
            self.error(node, f"@fn {fn!r}: invalid role {bad[0]!r}: use {ROLE_RULE}")
            return None
        return tuple(sorted(set(names)))

    def _timeout(self, fn: str, node: dict[str, Any] | None) -> int | float | None:
        if node is None:
            return DEFAULT_TIMEOUT_S
        if node["kind"] != "number":
            self.error(node, f"@fn {fn!r}: timeout must be a number literal (seconds)")
            return None
        value = node["value"]
        if not MIN_TIMEOUT_S <= value <= MAX_TIMEOUT_S:
            self.error(node, f"@fn {fn!r}: timeout must be {MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g} seconds")
            return None
        return int(value) if float(value).is_integer() else float(value)


def _check_package(service_dir: Path, root: str) -> list[Diagnostic]:
    """``package.json``: a JSON object whose ``"dormant"`` is an object (``baseRuntime`` optional, and
    only ``dormant-node:1``), with no npm dependencies but ``@dormant/runtime`` (the runtime provides it;
    an app layer carries no ``node_modules``). And ``tsconfig.json`` must be there."""
    shown = _shown(root, PACKAGE_FILE)
    problems: list[Diagnostic] = []
    if not (service_dir / TSCONFIG_FILE).is_file():
        problems.append(
            Diagnostic(_shown(root, TSCONFIG_FILE), 1, 1, "missing: a Node service needs a tsconfig.json")
        )
    try:
        data = json.loads((service_dir / PACKAGE_FILE).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        return [*problems, Diagnostic(shown, 1, 1, f"not a JSON document: {exc}")]
    marker = data.get(MARKER_KEY) if isinstance(data, dict) else None
    if not isinstance(marker, dict):
        return [*problems, Diagnostic(shown, 1, 1, f'"{MARKER_KEY}" must be an object, e.g. {{}}')]
    unknown = sorted(set(marker) - {"baseRuntime"})
    if unknown:
        problems.append(Diagnostic(shown, 1, 1, f'"{MARKER_KEY}" does not take {unknown[0]!r}'))
    base = marker.get("baseRuntime", NODE_BASE_RUNTIME)
    if base != NODE_BASE_RUNTIME:
        problems.append(
            Diagnostic(shown, 1, 1, f'"{MARKER_KEY}.baseRuntime" must be {NODE_BASE_RUNTIME!r}, not {base!r}')
        )
    for key in ("dependencies", "peerDependencies", "optionalDependencies", "bundleDependencies"):
        deps = data.get(key) or {}
        extra = sorted(set(deps) - {SDK_MODULE}) if isinstance(deps, dict) else [str(deps)]
        if extra:
            problems.append(
                Diagnostic(
                    shown,
                    1,
                    1,
                    f'"{key}": {extra[0]!r} cannot be used: a Node service may depend only on '
                    f"{SDK_MODULE} (the runtime provides it; app layers carry no node_modules)",
                )
            )
    return problems


def read_node_service(service_dir: Path) -> NodeService:
    """Read the Node service in ``service_dir``; ``CodegenError`` listing every problem found."""
    service_dir = Path(service_dir)
    root = display_root(service_dir)
    diagnostics = _check_package(service_dir, root)
    texts: dict[str, str] = {}
    rels: dict[str, str] = {}
    for rel in typescript_sources(service_dir):
        shown = _shown(root, rel)
        try:
            texts[shown] = (service_dir / rel).read_bytes().decode("utf-8")
            rels[shown] = rel
        except UnicodeDecodeError as exc:
            diagnostics.append(Diagnostic(shown, 1, 1, f"not UTF-8: {exc.reason}"))
    services: list[_Class] = []
    if texts:
        try:
            facts = read_facts(texts)
        except (ToolchainMissing, RuntimeError) as exc:
            raise CodegenError([Diagnostic(root or ".", 1, 1, str(exc))]) from None
        for file in facts:
            shown = str(file["path"])
            if file["syntaxErrors"]:
                diagnostics.extend(
                    Diagnostic(shown, e["line"], e["col"], f"invalid TypeScript: {e['message']}")
                    for e in file["syntaxErrors"]
                )
                continue
            reader = _FileReader(shown, rels[shown])
            services.extend(reader.read(file))
            diagnostics.extend(reader.diagnostics)

    schemas = load_schemas(service_dir, root, schema_sources(service_dir))
    diagnostics.extend(schemas.diagnostics)
    if not services:
        if not any(d.path.endswith(".ts") for d in diagnostics):
            diagnostics.append(
                Diagnostic(
                    root or ".",
                    1,
                    1,
                    f'no class decorated with @service("name") in any {SOURCE_DIR}/**/*.ts module '
                    "of the service",
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
    for fn in first.functions.values():
        for use in (fn.input, fn.output):
            if schema_name(schemas, use.name) is None and not schemas.unreadable:
                diagnostics.append(
                    Diagnostic(
                        fn.path,
                        use.line,
                        use.col,
                        f"@fn {fn.name!r}: no schema named {use.name!r} in {SCHEMAS_DIR}/*.json",
                    )
                )
    if diagnostics:
        raise CodegenError(_ordered(diagnostics))
    entry = f"{DIST_DIR}/{first.rel.removeprefix(SOURCE_DIR + '/').removesuffix('.ts')}.js"
    source = ServiceSource(
        name=first.name,
        class_name=first.class_name,
        module=first.rel,
        service_dir=service_dir,
        functions=first.functions,
        schemas=schemas.defs,
        schema_set=schemas,
        auth=first.auth,
    )
    return NodeService(source=source, entry=entry)


def _ordered(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(diagnostics, key=lambda d: (d.path, d.line, d.col))
