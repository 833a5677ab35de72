"""Loading, normalizing and checking ``schemas/*.json`` into one bundle of named schemas.

A file holds either one schema (named by its "title" when that is a plain name, else its file stem)
or a map of named schemas. Normalization folds the legacy ``"required": true`` inside a property into
the parent's ``required`` list and rewrites every ``$ref`` (``Other.json``, ``Other``,
``#/$defs/Other``, pointers inside the same schema) to ``#/$defs/...`` of the bundle. Each schema is
then checked against the JSON Schema Draft 2020-12 metaschema (``metaschema``, in plain words), for what
the metaschema lets through (``keywords``: unknown keywords, ``required`` names no object could have,
broken regexes), and every ``format`` against the formats a runtime checks
(``dormant._formats.CHECKED_FORMATS``; any other would be a silent pass). A ``$ref`` that resolves to
nothing is named with the schema it probably meant. Every problem becomes a ``Diagnostic`` at the line
and column of the offending key.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dormant._formats import CHECKED_FORMATS

from .constants import JSON_SCHEMA_DIALECT
from .diagnostics import Diagnostic
from .jsonpos import JsonPositions, escape_token, pointer
from .keywords import did_you_mean, keyword_problems
from .metaschema import metaschema_problems

SCHEMA_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_SINGLE_SCHEMA_KEYS = frozenset(
    {
        "$schema", "$id", "$ref", "$defs", "definitions", "type", "properties", "items", "prefixItems",
        "allOf", "anyOf", "oneOf", "not", "enum", "const", "additionalProperties", "patternProperties",
        "required", "format", "if", "then", "else",
    }
)  # fmt: skip
_MAP_KEYWORDS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_LIST_KEYWORDS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_ONE_KEYWORDS = frozenset(
    {
        "not", "if", "then", "else", "additionalProperties", "unevaluatedProperties", "unevaluatedItems",
        "contains", "propertyNames", "additionalItems", "contentSchema",
    }
)  # fmt: skip


@dataclass(slots=True)
class NamedSchema:
    """One named schema: where it came from and its normalized form."""

    name: str
    path: str
    prefix: str
    """JSON pointer of the schema inside its file ("" for a one-schema file)."""
    positions: JsonPositions
    raw: dict[str, Any]
    schema: dict[str, Any] = field(default_factory=dict)

    def at(self, parts: list[str | int], message: str) -> Diagnostic:
        line, col = self.positions.locate(self.prefix + pointer(parts))
        return Diagnostic(self.path, line, col, message)


@dataclass(slots=True)
class _File:
    stem: str
    path: str
    positions: JsonPositions
    single: bool
    names: list[str]


@dataclass(frozen=True, slots=True)
class _RefUse:
    owner: NamedSchema
    path: list[str | int]
    written: str
    target: str


class SchemaSet:
    """Every named schema of a service; build it with ``load_schemas``."""

    def __init__(self) -> None:
        self.named: dict[str, NamedSchema] = {}
        self.diagnostics: list[Diagnostic] = []
        self.unreadable: list[str] = []
        """Schema files that are not valid UTF-8 JSON objects (their names are unknown)."""
        self._files: dict[str, _File] = {}
        self._aliases: dict[str, str] = {}
        self._refs: list[_RefUse] = []

    @property
    def defs(self) -> dict[str, dict[str, Any]]:
        """Normalized schemas by name, sorted by name."""
        return {name: self.named[name].schema for name in sorted(self.named)}

    def bundle(self) -> dict[str, Any]:
        """All schemas in one document: ``{"$schema": 2020-12, "$defs": {...}}``."""
        return {"$schema": JSON_SCHEMA_DIALECT, "$defs": copy.deepcopy(self.defs)}

    def standalone(self, name: str) -> dict[str, Any]:
        """Schema ``name`` made self-contained: the schemas it references (transitively) in its ``$defs``."""
        defs = self.defs
        needed: set[str] = set()
        todo = list(_referenced_names(defs[name]))
        while todo:
            ref = todo.pop()
            if ref in needed or ref not in defs:
                continue
            needed.add(ref)
            todo.extend(_referenced_names(defs[ref]))
        result: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, **copy.deepcopy(defs[name])}
        if needed:
            own = result.get("$defs")
            merged: dict[str, Any] = dict(own) if isinstance(own, dict) else {}
            merged.update({n: copy.deepcopy(defs[n]) for n in sorted(needed)})
            result["$defs"] = merged
        return result

    # ---- loading -----------------------------------------------------------------------------

    def _load_file(self, display: str, stem: str, text: str) -> None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            self.unreadable.append(display)
            self.diagnostics.append(Diagnostic(display, exc.lineno, exc.colno, f"invalid JSON: {exc.msg}"))
            return
        positions = JsonPositions(text)
        if not isinstance(data, dict):
            self.unreadable.append(display)
            line, col = positions.locate("")
            self.diagnostics.append(
                Diagnostic(
                    display, line, col, "a schema file must hold a JSON object (a schema or a map of them)"
                )
            )
            return
        single = not data or any(key in _SINGLE_SCHEMA_KEYS for key in data)
        entries: list[tuple[str, str, Any]]
        if single:
            title = data.get("title")
            name = title if isinstance(title, str) and SCHEMA_NAME_RE.match(title) else stem
            entries = [(name, "", data)]
        else:
            entries = [(key, "/" + escape_token(key), value) for key, value in data.items()]
        file = _File(stem, display, positions, single, [])
        for name, prefix, raw in entries:
            line, col = positions.locate(prefix)
            if not isinstance(raw, dict):
                self.diagnostics.append(
                    Diagnostic(display, line, col, f"schema {name!r} must be a JSON object")
                )
                continue
            if not SCHEMA_NAME_RE.match(name):
                self.diagnostics.append(
                    Diagnostic(
                        display, line, col, f"invalid schema name {name!r}: use [A-Za-z_][A-Za-z0-9_-]*"
                    )
                )
                continue
            if name in self.named:
                first = self.named[name]
                self.diagnostics.append(
                    Diagnostic(display, line, col, f"duplicate schema name {name!r} (also in {first.path})")
                )
                continue
            self.named[name] = NamedSchema(name, display, prefix, positions, raw)
            file.names.append(name)
        self._files[stem] = file
        if single and file.names and file.names[0] != stem:
            self._aliases[stem] = file.names[0]

    # ---- normalizing -------------------------------------------------------------------------

    def lookup(self, name: str) -> str | None:
        if name in self.named:
            return name
        return self._aliases.get(name)

    def _rewrite_ref(self, owner: NamedSchema, written: str) -> str | None:
        """The bundle form (``#/$defs/...``) of a ``$ref`` written inside ``owner``, or None."""
        file = self._files[Path(owner.path).stem]
        if written.startswith("#"):
            frag = written[1:]
            parts = frag.split("/")[1:] if frag.startswith("/") else []
            if frag and not frag.startswith("/"):
                return None
            if parts and parts[0] in ("$defs", "definitions") and len(parts) > 1:
                local = owner.raw.get(parts[0])
                if file.single and isinstance(local, dict) and _unescape(parts[1]) in local:
                    return f"#/$defs/{owner.name}{frag}"
                target = self.lookup(_unescape(parts[1]))
                return None if target is None else "/".join(["#/$defs", escape_token(target), *parts[2:]])
            if not file.single and parts and _unescape(parts[0]) in file.names:
                return f"#/$defs{frag}"
            if file.single or not parts:
                return f"#/$defs/{escape_token(owner.name)}{frag}"
            return None
        if "://" in written:
            return None
        doc, _, frag = written.partition("#")
        doc = doc.removeprefix("./").removeprefix("schemas/")
        stem = doc[: -len(".json")] if doc.endswith(".json") else doc
        if frag and not frag.startswith("/"):
            return None
        target = self.lookup(stem)
        if target is not None and (stem not in self._files or self._files[stem].single):
            return f"#/$defs/{escape_token(target)}{frag}"
        other = self._files.get(stem)
        if other is not None and not other.single and frag:
            first = _unescape(frag.split("/")[1])
            return f"#/$defs{frag}" if first in other.names else None
        return None

    def _ref_problem(self, written: str, target: str | None) -> str:
        """Why ``$ref`` ``written`` (bundle form ``target``, when it had one) resolves to nothing."""
        head = f"$ref {written!r} resolves to nothing"
        if "://" in written:
            return f"{head}: URLs are not fetched; copy the schema into schemas/ and refer to it by name"
        doc, _, frag = written.partition("#")
        if frag and not frag.startswith("/"):
            return f"{head}: anchors are not supported; use a schema name ('Name.json') or a JSON pointer"
        if target is not None:
            parts = target.split("/")
            name, rest = _unescape(parts[2]), "/" + "/".join(parts[3:])
            return f"{head}: schema {name!r} has nothing at {rest}"
        tokens = [_unescape(t) for t in frag.split("/")[1:]] if frag else []
        if doc:
            stem = doc.removeprefix("./").removeprefix("schemas/").removesuffix(".json")
            other = self._files.get(stem)
            name = tokens[0] if other is not None and not other.single and tokens else stem
        elif tokens[:1] in (["$defs"], ["definitions"]) and len(tokens) > 1:
            name = tokens[1]
        elif tokens:
            name = tokens[0]
        else:
            return head
        known = set(self.named) | set(self._aliases)
        return f"{head}: no schema named {name!r} in schemas/*.json{did_you_mean(name, known)}"

    def _normalize(self, owner: NamedSchema, node: Any, path: list[str | int]) -> Any:
        if not isinstance(node, dict):
            return copy.deepcopy(node)
        out: dict[str, Any] = {}
        for key, value in node.items():
            here = [*path, key]
            if key == "$ref" and isinstance(value, str):
                target = self._rewrite_ref(owner, value)
                if target is None:
                    self.diagnostics.append(owner.at(here, self._ref_problem(value, None)))
                    out[key] = value
                else:
                    self._refs.append(_RefUse(owner, here, value, target))
                    out[key] = target
            elif key in _MAP_KEYWORDS and isinstance(value, dict):
                out[key] = {k: self._normalize(owner, v, [*here, k]) for k, v in value.items()}
            elif (key in _LIST_KEYWORDS or key == "items") and isinstance(value, list):
                out[key] = [self._normalize(owner, v, [*here, i]) for i, v in enumerate(value)]
            elif key in _ONE_KEYWORDS or key == "items":
                out[key] = self._normalize(owner, value, here)
            else:
                out[key] = copy.deepcopy(value)
        _fold_legacy_required(out)
        return out

    def normalize(self) -> None:
        for named in self.named.values():
            schema = self._normalize(named, named.raw, [])
            schema.pop("$schema", None)
            schema.pop("$id", None)
            named.schema = schema
        bundle = {"$defs": self.defs}
        for use in self._refs:
            if not _resolves(bundle, use.target):
                self.diagnostics.append(use.owner.at(use.path, self._ref_problem(use.written, use.target)))

    # ---- checking ----------------------------------------------------------------------------

    def check_formats(self) -> None:
        """Refuse every ``format`` a runtime does not check, and formats on types they cannot apply to."""
        for named in self.named.values():
            for parts, message in _format_problems(named.schema, []):
                self.diagnostics.append(named.at(parts, message))

    def validate(self) -> None:
        """Check every normalized schema against the Draft 2020-12 metaschema (``metaschema``)."""
        for named in self.named.values():
            for parts, message in metaschema_problems(named.schema):
                self.diagnostics.append(named.at(parts, message))

    def check_keywords(self) -> None:
        """Unknown keywords, impossible ``required`` names, broken regexes (``keywords``), as written."""
        for named in self.named.values():
            for parts, message in keyword_problems(named.raw):
                self.diagnostics.append(named.at(parts, message))


def _format_problems(node: Any, path: list[str | int]) -> Iterator[tuple[list[str | int], str]]:
    """(path of the ``format`` key, message) for each format no runtime would check, in schema positions."""
    if not isinstance(node, dict):
        return
    fmt = node.get("format")
    if isinstance(fmt, str):
        types = node.get("type")
        declared = [types] if isinstance(types, str) else types if isinstance(types, list) else None
        if fmt not in CHECKED_FORMATS:
            yield (
                [*path, "format"],
                f"format {fmt!r} is not checked by the runtime (checked formats: "
                + ", ".join(sorted(CHECKED_FORMATS))
                + "); use a pattern or another format",
            )
        elif declared is not None and "string" not in declared:
            yield (
                [*path, "format"],
                f"format {fmt!r} applies to strings only, and this schema's type is "
                + ", ".join(str(t) for t in declared),
            )
    for key, value in node.items():
        here = [*path, key]
        if key in _MAP_KEYWORDS and isinstance(value, dict):
            for sub_key, sub in value.items():
                yield from _format_problems(sub, [*here, sub_key])
        elif (key in _LIST_KEYWORDS or key == "items") and isinstance(value, list):
            for index, sub in enumerate(value):
                yield from _format_problems(sub, [*here, index])
        elif key in _ONE_KEYWORDS or key == "items":
            yield from _format_problems(value, here)


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def _fold_legacy_required(schema: dict[str, Any]) -> None:
    """``{"properties": {"a": {"required": true}}}`` → ``{"properties": {"a": {}}, "required": ["a"]}``."""
    props = schema.get("properties")
    if not isinstance(props, dict):
        return
    legacy: list[str] = []
    for prop, sub in props.items():
        if isinstance(sub, dict) and isinstance(sub.get("required"), bool):
            if sub.pop("required"):
                legacy.append(prop)
    if not legacy:
        return
    existing = schema.get("required")
    if existing is None:
        schema["required"] = legacy
    elif isinstance(existing, list):
        schema["required"] = existing + [p for p in legacy if p not in existing]


def _referenced_names(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                yield _unescape(value.split("/")[2])
            else:
                yield from _referenced_names(value)
    elif isinstance(node, list):
        for item in node:
            yield from _referenced_names(item)


def _resolves(doc: Any, ref: str) -> bool:
    node = doc
    for token in ref[2:].split("/") if ref.startswith("#/") else []:
        key = _unescape(token)
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False
    return isinstance(node, dict | bool)


def load_schemas(service_dir: Path, display_dir: str, rel_paths: list[str]) -> SchemaSet:
    """Load, normalize and (when they parse) validate the schema files ``rel_paths`` of a service."""
    schemas = SchemaSet()
    for rel in rel_paths:
        display = f"{display_dir}/{rel}" if display_dir else rel
        try:
            text = (service_dir / rel).read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            schemas.unreadable.append(display)
            schemas.diagnostics.append(Diagnostic(display, 1, 1, f"not UTF-8: {exc.reason}"))
            continue
        schemas._load_file(display, Path(rel).stem, text)
    schemas.normalize()
    schemas.validate()
    schemas.check_keywords()
    schemas.check_formats()
    return schemas
