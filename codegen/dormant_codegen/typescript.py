"""TypeScript from a service's schemas: ``models.ts`` (a type per named schema) and ``client.ts``.

Why hand-written: a Python service's ``dormant generate`` must not need Node (its authors may not have
it), and the usual emitter (json-schema-to-typescript) is a Node package. Dormant accepts a known subset
of JSON Schema Draft 2020-12 (``metaschema``: the dialect; ``keywords``: nothing outside it), already
normalized by ``schemas`` (every ``$ref`` points into the bundle as ``#/$defs/...``), so the mapping is
small enough to own:

- ``type`` (one or a list) -> ``string`` / ``number`` (``integer`` too) / ``boolean`` / ``null`` /
  arrays / objects, a list becoming a union (``["string", "null"]`` -> ``string | null``); without
  ``type`` the kind is read from the keywords present (``properties`` -> object, ``items`` -> array);
- ``enum`` / ``const`` -> unions of literal types; ``anyOf`` / ``oneOf`` -> unions, ``allOf`` ->
  intersections (each with the node's own type);
- objects -> ``{ name: T; other?: U }`` (``required`` decides ``?``; JSON names that are not
  identifiers are quoted, never renamed), plus an index signature when more keys may appear
  (``additionalProperties`` absent, ``true`` or a schema, or ``patternProperties``): its type is the
  union of the extra keys' type and every declared property's, as TypeScript requires;
- arrays -> ``T[]``; ``prefixItems`` -> tuples (elements past ``minItems`` optional, ``items`` the rest);
- ``$ref`` to a named schema -> that schema's type name; a pointer deeper into a schema -> the type of
  what it points at, inlined (``unknown`` where that would recurse for ever);
- what a type cannot say (``format``, ``pattern``, bounds, ``not``, ``if``/``then``/``else``) is left to
  the runtime, which validates every input and output; ``description`` becomes a doc comment.

Type names are the schema names when they are TypeScript identifiers (``GetUserRequest``), otherwise
made into one (``user-id`` -> ``UserId``), never a predefined type's name, and unique.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .constants import HEADER_TEXT

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).parent / "templates" / "typescript"

TS_HEADER = f"// {HEADER_TEXT}\n"

ERROR_TYPES = (
    "ValidationError",
    "BusinessLogicError",
    "SystemError",
    "TimeoutError",
    "Unauthenticated",
    "Forbidden",
    "NotFound",
    "Unavailable",
    "Conflict",
    "Throttled",
)
"""The wire error ``type`` values (``dormant.errors.ERROR_TYPES``), in the order the docs list them."""

_IDENT_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_RESERVED_TYPE_NAMES = frozenset(
    {
        "any", "unknown", "never", "number", "bigint", "boolean", "string", "symbol", "void", "object",
        "undefined", "null", "this", "true", "false", "Array", "Record", "Promise", "Error", "Object",
        "String", "Number", "Boolean", "Function", "Symbol", "Date", "Map", "Set", "JSON", "Partial",
        "Readonly", "Required", "Pick", "Omit",
    }
)  # fmt: skip
"""Names a generated type may not take: predefined types, and globals a generated file refers to."""
_RESERVED_WORDS = frozenset(
    {
        "break", "case", "catch", "class", "const", "continue", "debugger", "default", "delete", "do",
        "else", "enum", "export", "extends", "false", "finally", "for", "function", "if", "import", "in",
        "instanceof", "new", "null", "return", "super", "switch", "this", "throw", "true", "try",
        "typeof", "var", "void", "while", "with", "implements", "interface", "let", "package", "private",
        "protected", "public", "static", "yield", "await", "type", "as", "from", "of",
    }
)  # fmt: skip
_DEFS_PREFIX = "#/$defs/"
_SIMPLE = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean", "null": "null"}
_OBJECT_HINTS = ("properties", "additionalProperties", "patternProperties", "required", "propertyNames")
_ARRAY_HINTS = ("items", "prefixItems", "contains")


def ts_string(value: str) -> str:
    """A TypeScript string literal (JSON string syntax is valid TypeScript; U+2028/9 too, since ES2019)."""
    return json.dumps(value, ensure_ascii=False)


def type_names(names: Sequence[str]) -> dict[str, str]:
    """The TypeScript type name of each schema name: the name itself when it is an identifier and not
    reserved, else PascalCase of its parts (``-`` splits); a clash gets ``_2``, ``_3``... (in sorted
    order of the schema names, so the result does not depend on the order given)."""
    taken: set[str] = set()
    result: dict[str, str] = {}
    ordered = sorted(names, key=lambda n: (not _usable(n), n))  # identifiers keep their own names first
    for name in ordered:
        base = name if _usable(name) else _pascal(name)
        candidate, n = base, 1
        while candidate in taken or not _usable(candidate):
            n += 1
            candidate = f"{base}_{n}"
        taken.add(candidate)
        result[name] = candidate
    return {name: result[name] for name in names}


def _usable(name: str) -> bool:
    return bool(_IDENT_RE.match(name)) and name not in _RESERVED_TYPE_NAMES and name not in _RESERVED_WORDS


def _pascal(name: str) -> str:
    parts = [p for p in re.split(r"[^A-Za-z0-9_$]+", name) if p]
    joined = "".join(p[:1].upper() + p[1:] for p in parts) or "Schema"
    return joined if not joined[0].isdigit() else f"_{joined}"


def property_key(name: str) -> str:
    """An object type's key for JSON name ``name``: bare when it is an identifier, quoted otherwise."""
    return name if _IDENT_RE.match(name) else ts_string(name)


def _doc(text: str | None, indent: str) -> str:
    if not text:
        return ""
    lines = text.replace("*/", "*\\/").splitlines() or [""]
    if len(lines) == 1:
        return f"{indent}/** {lines[0].strip()} */\n"
    body = "".join(f"{indent} *{(' ' + line.rstrip()) if line.strip() else ''}\n" for line in lines)
    return f"{indent}/**\n{body}{indent} */\n"


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return ts_string(value)
    if isinstance(value, int | float):
        text = json.dumps(value)
        return text if text not in ("Infinity", "-Infinity", "NaN") else "number"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "Record<string, never>"
        return "{ " + " ".join(f"{property_key(k)}: {_literal(v)};" for k, v in value.items()) + " }"
    return "unknown"


def _union(parts: list[str]) -> str:
    seen: list[str] = []
    for part in parts:
        if part == "never":
            continue
        if part == "unknown":
            return "unknown"
        if part not in seen:
            seen.append(part)
    if not seen:
        return "never"
    return seen[0] if len(seen) == 1 else " | ".join(_paren(p) for p in seen)


def _intersection(parts: list[str]) -> str:
    kept: list[str] = []
    for part in parts:
        if part == "never":
            return "never"
        if part != "unknown" and part not in kept:
            kept.append(part)
    if not kept:
        return "unknown"
    return kept[0] if len(kept) == 1 else " & ".join(_paren(p) for p in kept)


def _paren(text: str) -> str:
    """``text`` wrapped when it is a union or intersection at its top level (outside brackets/strings)."""
    depth = 0
    quoted = False
    escaped = False
    for ch in text:
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch in "|&" and depth == 0:
            return f"({text})"
    return text


@dataclass(slots=True)
class _Emitter:
    defs: Mapping[str, Any]
    names: dict[str, str]
    indent_unit: str = "  "

    def resolve_pointer(self, ref: str) -> Any:
        if not ref.startswith(_DEFS_PREFIX):
            return None
        node: Any = {"$defs": self.defs}
        for token in ref[2:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return None
        return node

    def ref_type(self, ref: str, depth: int, seen: frozenset[str]) -> str:
        rest = ref.removeprefix(_DEFS_PREFIX)
        if ref.startswith(_DEFS_PREFIX) and "/" not in rest:
            name = rest.replace("~1", "/").replace("~0", "~")
            if name in self.names:
                return self.names[name]
        if ref in seen:
            return "unknown"
        target = self.resolve_pointer(ref)
        return "unknown" if target is None else self.type_of(target, depth, seen | {ref})

    def type_of(self, schema: Any, depth: int = 0, seen: frozenset[str] = frozenset()) -> str:
        """The TypeScript type of ``schema``; nested object members are indented for ``depth``."""
        if schema is True or schema == {}:
            return "unknown"
        if schema is False:
            return "never"
        if not isinstance(schema, dict):
            return "unknown"
        parts: list[str] = []
        ref = schema.get("$ref")
        if isinstance(ref, str):
            parts.append(self.ref_type(ref, depth, seen))
        if "const" in schema:
            parts.append(_literal(schema["const"]))
        elif isinstance(schema.get("enum"), list):
            parts.append(_union([_literal(v) for v in schema["enum"]]) if schema["enum"] else "never")
        else:
            parts.append(self.own_type(schema, depth, seen))
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                parts.append(_union([self.type_of(b, depth, seen) for b in branches]))
        branches = schema.get("allOf")
        if isinstance(branches, list):
            parts.extend(self.type_of(b, depth, seen) for b in branches)
        return _intersection(parts)

    def own_type(self, schema: dict[str, Any], depth: int, seen: frozenset[str]) -> str:
        """The type the node's ``type`` (or, without one, its keywords) says, ignoring combinators."""
        declared = schema.get("type")
        kinds: list[str]
        if isinstance(declared, str):
            kinds = [declared]
        elif isinstance(declared, list):
            kinds = [k for k in declared if isinstance(k, str)]
        elif any(k in schema for k in _OBJECT_HINTS):
            kinds = ["object"]
        elif any(k in schema for k in _ARRAY_HINTS):
            kinds = ["array"]
        else:
            return "unknown"
        out: list[str] = []
        for kind in kinds:
            if kind in _SIMPLE:
                out.append(_SIMPLE[kind])
            elif kind == "array":
                out.append(self.array_type(schema, depth, seen))
            elif kind == "object":
                out.append(self.object_type(schema, depth, seen))
        return _union(out)

    def array_type(self, schema: dict[str, Any], depth: int, seen: frozenset[str]) -> str:
        items = schema.get("items")
        prefix = schema.get("prefixItems")
        if isinstance(prefix, list) and prefix:
            least = schema.get("minItems")
            least = least if isinstance(least, int) and not isinstance(least, bool) else 0
            elements = [
                self.type_of(p, depth, seen) + ("" if i < least else "?") for i, p in enumerate(prefix)
            ]
            if items is not False:
                elements.append(f"...{_paren(self.type_of(True if items is None else items, depth, seen))}[]")
            return "[" + ", ".join(elements) + "]"
        element = "unknown" if items is None else self.type_of(items, depth, seen)
        return f"{_paren(element)}[]"

    def object_type(self, schema: dict[str, Any], depth: int, seen: frozenset[str]) -> str:
        members = self.object_members(schema, depth + 1, seen)
        if not members:
            return "Record<string, never>"
        pad = self.indent_unit * depth
        return "{\n" + "".join(members) + pad + "}"

    def object_members(self, schema: dict[str, Any], depth: int, seen: frozenset[str]) -> list[str]:
        """The lines of an object type's body (each ends with a newline), indented for ``depth``."""
        pad = self.indent_unit * depth
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        required_names = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        lines: list[str] = []
        member_types: list[str] = []
        for name, sub in props.items():
            ts = self.type_of(sub, depth, seen)
            optional = name not in required_names
            member_types.append(ts)
            doc = sub.get("description") if isinstance(sub, dict) else None
            lines.append(_doc(doc if isinstance(doc, str) else None, pad))
            lines.append(f"{pad}{property_key(name)}{'?' if optional else ''}: {ts};\n")
        extra = schema.get("additionalProperties", True)
        extra_types: list[str] = []
        if extra is not False:
            extra_types.append(self.type_of(extra, depth, seen))
        patterns = schema.get("patternProperties")
        if isinstance(patterns, dict):
            extra_types.extend(self.type_of(sub, depth, seen) for sub in patterns.values())
        for name in required_names:  # required but not declared: present, of any type the rest allows
            if name not in props and extra is not False:
                lines.append(
                    f"{pad}{property_key(name)}: {_union(extra_types) if extra_types else 'unknown'};\n"
                )
        index = _union(extra_types) if extra_types else "never"
        if index != "never":
            # Every member must fit the index signature; under --strict an optional one is `T | undefined`.
            any_optional = any(name not in required_names for name in props)
            everything = _union([index, *member_types, *(["undefined"] if any_optional else [])])
            lines.append(f"{pad}[key: string]: {everything};\n")
        return [line for line in lines if line]


def render_typescript_models(defs: Mapping[str, Any], *, header: str = TS_HEADER) -> str:
    """``models.ts``: one exported type per named schema of ``defs`` (the bundle's ``$defs``: name ->
    normalized schema, whose ``$ref``s are ``#/$defs/...``), in sorted name order. Objects become
    ``export interface``, everything else ``export type``."""
    names = type_names(list(defs))
    emitter = _Emitter(defs, names)
    chunks = [header, "/* eslint-disable */\n"]
    for name in sorted(defs):
        schema = defs[name]
        ts_name = names[name]
        doc = schema.get("description") if isinstance(schema, dict) else None
        title = schema.get("title") if isinstance(schema, dict) else None
        text = doc if isinstance(doc, str) else title if isinstance(title, str) else None
        if ts_name != name:
            note = f"Schema {ts_string(name)}."
            text = f"{note}\n\n{text}" if text else note
        chunks.append("\n" + _doc(text, ""))
        if _is_plain_object(schema):
            members = emitter.object_members(schema, 1, frozenset()) or ["  [key: string]: never;\n"]
            chunks.append(f"export interface {ts_name} {{\n" + "".join(members) + "}\n")
        else:
            chunks.append(f"export type {ts_name} = {emitter.type_of(schema)};\n")
    return "".join(chunks)


def _is_plain_object(schema: Any) -> bool:
    """An object schema an ``interface`` can say: type object (alone) and nothing that combines types."""
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        return False
    if any(k in schema for k in ("$ref", "enum", "const", "anyOf", "oneOf", "allOf")):
        return False
    return "type" in schema or any(k in schema for k in _OBJECT_HINTS)


@dataclass(frozen=True, slots=True)
class ClientFunction:
    """What ``client.ts`` needs of one function: its name, schema names and timeout."""

    name: str
    input_schema: str
    output_schema: str
    timeout: float
    roles: tuple[str, ...] = ()
    description: str | None = None


def client_class_name(service: str) -> str:
    """``user-service`` -> ``UserServiceClient`` (the class both generated clients declare)."""
    return _pascal(service) + "Client"


_TS_METHOD_AVOID = frozenset({"constructor", "transport"})
"""Function names a client method cannot take as they are (the class's constructor and its field)."""


def ts_method_name(function: str) -> str:
    """The client method of ``function``: its own name (function names are identifiers), or with ``_``
    appended where that would be the constructor or the transport field."""
    return f"{function}_" if function in _TS_METHOD_AVOID else function


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    import jinja2  # lazy: a no-op generate never renders

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["tsstr"] = ts_string
    return env


def render_typescript_client(
    service: str, interface_hash: str, functions: Sequence[ClientFunction], schema_names: Sequence[str]
) -> str:
    """``client.ts``: the typed client class over a ``Transport``, importing its types from
    ``./models.js`` (the ``models.ts`` that ``render_typescript_models`` writes for ``schema_names``)."""
    names = type_names(list(schema_names))
    rows = [
        {
            "name": ts_method_name(fn.name),
            "function": fn.name,
            "input_type": names[fn.input_schema],
            "output_type": names[fn.output_schema],
            "timeout": f"{fn.timeout:g}",
            "roles": list(fn.roles),
        }
        for fn in sorted(functions, key=lambda f: f.name)
    ]
    imports = sorted(
        {names[fn.input_schema] for fn in functions} | {names[fn.output_schema] for fn in functions}
    )
    return (
        _environment()
        .get_template("client.ts.j2")
        .render(
            header=TS_HEADER,
            service=service,
            interface_hash=interface_hash,
            class_name=client_class_name(service),
            error_types=ERROR_TYPES,
            imports=imports,
            functions=rows,
        )
    )
