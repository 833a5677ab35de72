"""Reading handler classes out of user modules with ``ast`` (user code is never imported).

Finds the one ``@service("name", auth=)`` class and its ``@function("name", input=, output=, timeout=,
roles=)`` methods, with the schema names taken from the keyword arguments or else from the annotations of the
request parameter and the return value (``Name`` or ``models.Name``), and the source position of each
fact so later checks can point at it.
"""

from __future__ import annotations

import ast
import threading
from dataclasses import dataclass, field
from pathlib import Path

from dormant.app import AUTH_MODES, MAX_TIMEOUT_S, MIN_TIMEOUT_S, AuthMode
from dormant.decorators import ROLE_RULE, is_valid_function_name, is_valid_role, is_valid_service_name

from .constants import DEFAULT_TIMEOUT_S
from .diagnostics import Diagnostic

_PARSING = threading.Lock()


def parse_module(source: str, *, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse``, one call at a time in this process: CPython 3.11 keeps the AST conversion's
    recursion depth per interpreter, not per thread, so two threads parsing at once (two builds in
    ``asyncio.to_thread``) can fail with "AST constructor recursion depth mismatch" (gh-106905)."""
    with _PARSING:
        return ast.parse(source, filename=filename)


def parse_expression(source: str) -> ast.expr:
    """One expression, parsed as ``parse_module`` parses (one at a time)."""
    with _PARSING:
        return ast.parse(source, mode="eval").body


_DORMANT_MODULES = ("dormant", "dormant.decorators")


@dataclass(frozen=True, slots=True)
class SchemaUse:
    """A schema named by a function, and where (in its .py file) it was named."""

    name: str
    line: int
    col: int


@dataclass(frozen=True, slots=True)
class FunctionSource:
    """One ``@function`` method as written in the source."""

    name: str
    method: str
    input: SchemaUse
    output: SchemaUse
    timeout: int | float
    path: str
    line: int
    col: int
    roles: tuple[str, ...] = ()


@dataclass(slots=True)
class ServiceClass:
    """The ``@service`` class: its wire name, Python class name, module and functions (source order)."""

    name: str
    class_name: str
    module: str
    path: str
    line: int
    col: int
    functions: dict[str, FunctionSource] = field(default_factory=dict)
    auth: AuthMode = "required"


class _Names:
    """How ``service``/``function`` are spelled in one module, following its imports of ``dormant``."""

    def __init__(self, tree: ast.Module) -> None:
        self.direct: dict[str, str] = {}
        self.modules: set[str] = set()
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module in _DORMANT_MODULES and node.level == 0:
                for alias in node.names:
                    if alias.name in ("service", "function"):
                        self.direct[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in _DORMANT_MODULES:
                        self.modules.add(alias.asname or alias.name)
        if not self.direct and not self.modules:
            self.direct = {"service": "service", "function": "function"}

    def kind(self, decorator: ast.expr) -> tuple[str, ast.Call] | None:
        """``("service"|"function", call)`` when ``decorator`` is one of ours, called."""
        if not isinstance(decorator, ast.Call):
            return None
        func = decorator.func
        if isinstance(func, ast.Name) and func.id in self.direct:
            return self.direct[func.id], decorator
        if (
            isinstance(func, ast.Attribute)
            and func.attr in ("service", "function")
            and ast.unparse(func.value) in self.modules
        ):
            return func.attr, decorator
        return None


def module_name(rel_path: str) -> str:
    """``handlers.py`` → ``handlers``; ``pkg/api.py`` → ``pkg.api``; ``pkg/__init__.py`` → ``pkg``."""
    parts = list(Path(rel_path).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


class _Reader:
    def __init__(self, display: str, rel: str) -> None:
        self.display = display
        self.rel = rel
        self.diagnostics: list[Diagnostic] = []

    def error(self, node: ast.AST | None, message: str) -> None:
        line = getattr(node, "lineno", 1) if node is not None else 1
        col = getattr(node, "col_offset", 0) + 1 if node is not None else 1
        self.diagnostics.append(Diagnostic(self.display, line, col, message))

    def literal_str(
        self, call: ast.Call, what: str, position: int, keyword: str
    ) -> tuple[str, ast.expr] | None:
        node: ast.expr | None = call.args[position] if len(call.args) > position else None
        for kw in call.keywords:
            if kw.arg == keyword:
                node = kw.value
        if node is None:
            self.error(call, f'{what} needs a name: {what}("...")')
            return None
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            self.error(node, f"the {what} name must be a string literal")
            return None
        return node.value, node

    def read(self, tree: ast.Module) -> list[ServiceClass]:
        names = _Names(tree)
        found: list[ServiceClass] = []
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            for deco in node.decorator_list:
                hit = names.kind(deco)
                if hit is None or hit[0] != "service":
                    continue
                literal = self.literal_str(hit[1], "@service", 0, "name")
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
                auth = self._auth(hit[1])
                if auth is None:
                    continue
                svc = ServiceClass(
                    name=svc_name,
                    class_name=node.name,
                    module=module_name(self.rel),
                    path=self.display,
                    line=deco.lineno,
                    col=deco.col_offset + 1,
                    auth=auth,
                )
                self._functions(node, names, svc)
                found.append(svc)
        return found

    def _auth(self, call: ast.Call) -> AuthMode | None:
        kwargs = {kw.arg: kw.value for kw in call.keywords if kw.arg is not None}
        unknown = sorted(set(kwargs) - {"name", "auth"})
        if unknown:
            self.error(kwargs[unknown[0]], f"@service does not take {unknown[0]}=")
            return None
        node = kwargs.get("auth")
        if node is None:
            return "required"
        value = node.value if isinstance(node, ast.Constant) else None
        for mode in AUTH_MODES:
            if value == mode:
                return mode
        self.error(node, f"@service auth= must be one of {', '.join(repr(m) for m in AUTH_MODES)}")
        return None

    def _functions(self, cls: ast.ClassDef, names: _Names, svc: ServiceClass) -> None:
        for node in cls.body:
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for deco in node.decorator_list:
                hit = names.kind(deco)
                if hit is None or hit[0] != "function":
                    continue
                fn = self._function(node, deco, hit[1])
                if fn is None:
                    continue
                if fn.roles and svc.auth == "off":
                    self.error(
                        deco,
                        f'@function {fn.name!r}: roles= needs authentication; the service has auth="off"',
                    )
                    continue
                if fn.name in svc.functions:
                    first = svc.functions[fn.name]
                    self.error(deco, f"duplicate function name {fn.name!r} (first at line {first.line})")
                    continue
                svc.functions[fn.name] = fn

    def _function(
        self, node: ast.FunctionDef | ast.AsyncFunctionDef, deco: ast.expr, call: ast.Call
    ) -> FunctionSource | None:
        literal = self.literal_str(call, "@function", 0, "name")
        if literal is None:
            return None
        name, name_node = literal
        ok = True
        if not is_valid_function_name(name):
            self.error(name_node, f"invalid function name {name!r}: use [A-Za-z][A-Za-z0-9_]*, not v<digits>")
            ok = False
        if not isinstance(node, ast.AsyncFunctionDef):
            self.error(node, f"@function {name!r}: method {node.name!r} must be declared 'async def'")
            ok = False
        params = [*node.args.posonlyargs, *node.args.args]
        request = params[1] if len(params) > 1 else None
        if request is None:
            self.error(node, f"@function {name!r}: {node.name}() must take (self, request, ctx)")
            ok = False
        kwargs = {kw.arg: kw.value for kw in call.keywords if kw.arg is not None}
        unknown = sorted(set(kwargs) - {"name", "input", "output", "timeout", "roles"})
        if unknown:
            self.error(kwargs[unknown[0]], f"@function does not take {unknown[0]}=")
            ok = False
        in_use = self._schema(
            name, "input", kwargs.get("input"), request.annotation if request else None, node
        )
        out_use = self._schema(name, "output", kwargs.get("output"), node.returns, node)
        timeout = self._timeout(name, kwargs.get("timeout"))
        roles = self._roles(name, kwargs.get("roles"))
        if not ok or in_use is None or out_use is None or timeout is None or roles is None:
            return None
        return FunctionSource(
            name=name,
            method=node.name,
            input=in_use,
            output=out_use,
            timeout=timeout,
            roles=roles,
            path=self.display,
            line=deco.lineno,
            col=deco.col_offset + 1,
        )

    def _schema(
        self, fn: str, role: str, explicit: ast.expr | None, annotation: ast.expr | None, node: ast.AST
    ) -> SchemaUse | None:
        if explicit is not None:
            if isinstance(explicit, ast.Constant) and isinstance(explicit.value, str) and explicit.value:
                return SchemaUse(explicit.value, explicit.lineno, explicit.col_offset + 1)
            self.error(explicit, f"@function {fn!r}: {role}= must be a schema name string")
            return None
        where = "the request parameter" if role == "input" else "the return value"
        if annotation is None:
            self.error(node, f'@function {fn!r}: annotate {where} with a schema model or pass {role}="..."')
            return None
        target: ast.expr = annotation
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                target = parse_expression(annotation.value)
            except SyntaxError:
                target = annotation
        if isinstance(target, ast.Name):
            return SchemaUse(target.id, annotation.lineno, annotation.col_offset + 1)
        if isinstance(target, ast.Attribute):
            return SchemaUse(target.attr, annotation.lineno, annotation.col_offset + 1)
        self.error(
            annotation,
            f"@function {fn!r}: cannot tell the {role} schema from {ast.unparse(annotation)!r}; "
            f'annotate {where} with a model class or pass {role}="SchemaName"',
        )
        return None

    def _roles(self, fn: str, node: ast.expr | None) -> tuple[str, ...] | None:
        """A list or tuple of role-name literals, kept sorted and without repeats (what callers see)."""
        if node is None:
            return ()
        items = node.elts if isinstance(node, ast.List | ast.Tuple) else None
        names = [e.value for e in items or () if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        if items is None or len(names) != len(items):
            self.error(node, f'@function {fn!r}: roles= must be a list of string literals, e.g. ["admin"]')
            return None
        bad = [name for name in names if not is_valid_role(name)]
        if bad:
            self.error(node, f"@function {fn!r}: invalid role {bad[0]!r}: use {ROLE_RULE}")
            return None
        return tuple(sorted(set(names)))

    def _timeout(self, fn: str, node: ast.expr | None) -> int | float | None:
        if node is None:
            return DEFAULT_TIMEOUT_S
        value = node.value if isinstance(node, ast.Constant) else None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(node, f"@function {fn!r}: timeout= must be a number literal (seconds)")
            return None
        if not MIN_TIMEOUT_S <= value <= MAX_TIMEOUT_S:
            self.error(
                node, f"@function {fn!r}: timeout must be {MIN_TIMEOUT_S:g} to {MAX_TIMEOUT_S:g} seconds"
            )
            return None
        return int(value) if float(value).is_integer() else float(value)


def read_module(display: str, rel: str, text: str) -> tuple[list[ServiceClass], list[Diagnostic]]:
    """The ``@service`` classes of one module (``display`` is the path shown in diagnostics)."""
    reader = _Reader(display, rel)
    try:
        tree = parse_module(text, filename=display)
    except SyntaxError as exc:
        return [], [Diagnostic(display, exc.lineno or 1, exc.offset or 1, f"invalid Python: {exc.msg}")]
    found = reader.read(tree)
    return found, reader.diagnostics
