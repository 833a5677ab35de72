"""Interface compatibility: is a service's new ``interface.json`` safe for the callers of an older one?

Pure (no I/O). ``compare(old, new)`` returns a ``Verdict``: breaking findings and non-breaking notes,
each with the function, the direction, a schema path (``createUser.input.properties.email.maxLength``),
a buf-style rule id and a message. Per function:

- inputs must stay *backward compatible*: everything the old input schema accepted, the new one must
  accept (a new required property, a narrowed type, a removed enum value, a tighter bound break callers);
- outputs must stay *forward compatible*: everything the new output schema allows must be allowed by
  the old one, which is what callers were written against (a removed or newly optional property, a
  widened type, a loosened bound, a new enum value break them);
- a removed or renamed function, a new required role and authentication becoming required break callers.

Both directions are one check, "every instance of ``sub`` is an instance of ``sup``" (inputs: old in
new; outputs: new in old), made keyword by keyword with ``$ref``/``$defs`` resolved, ``anyOf``/``oneOf``/
``allOf`` split, and enum and const values validated against the other schema. It is conservative:
what it cannot prove compatible (a changed ``not``, ``if``, ``patternProperties`` ..., a union no
branch of which covers the other side) is breaking, with a message saying so.

``next_schema_version`` and ``schema_version_document`` give the seed's schema version document
(``schemaVersion``: semver, major on a breaking change, minor on an addition, patch otherwise;
``backwardCompatible``: the earlier schema versions this one is compatible with).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Direction = Literal["input", "output", "function", "service"]
Bump = Literal["major", "minor", "patch", "none"]

FIRST_SCHEMA_VERSION = "1.0.0"

# What a rule is called when the new schema is narrower (inputs) or wider (outputs) than the old one.
# key: the condition found by the subset check; value: (rule on inputs, rule on outputs).
_RULES: dict[str, tuple[str, str]] = {
    "type": ("TYPE_NARROWED", "TYPE_WIDENED"),
    "enum_value": ("ENUM_VALUE_REMOVED", "ENUM_VALUE_ADDED"),
    "enum_added": ("ENUM_ADDED", "ENUM_REMOVED"),
    "const_changed": ("CONST_CHANGED", "CONST_CHANGED"),
    "const_added": ("CONST_ADDED", "CONST_REMOVED"),
    "bound": ("BOUND_TIGHTENED", "BOUND_LOOSENED"),
    "pattern_changed": ("PATTERN_CHANGED", "PATTERN_CHANGED"),
    "pattern_added": ("PATTERN_ADDED", "PATTERN_REMOVED"),
    "format_changed": ("FORMAT_CHANGED", "FORMAT_CHANGED"),
    "format_added": ("FORMAT_ADDED", "FORMAT_REMOVED"),
    "closed": ("ADDITIONAL_PROPERTIES_CLOSED", "ADDITIONAL_PROPERTIES_OPENED"),
    "property_not_allowed": ("INPUT_PROPERTY_REMOVED", "OUTPUT_PROPERTY_ADDED_TO_CLOSED"),
    "union": ("UNION_NOT_COVERED", "UNION_NOT_COVERED"),
    "unsupported": ("UNSUPPORTED_KEYWORD_CHANGED", "UNSUPPORTED_KEYWORD_CHANGED"),
    "ref": ("REF_UNRESOLVED", "REF_UNRESOLVED"),
}

RULES: dict[str, str] = {
    # breaking
    "FUNCTION_REMOVED": "a function callers use is gone",
    "FUNCTION_RENAMED": "a function is gone and a new one has its schemas: callers use the old name",
    "FUNCTION_ROLE_ADDED": "a function requires a role it did not: callers without it are refused",
    "SERVICE_AUTH_REQUIRED": "the service requires a token it did not: anonymous callers are refused",
    "INPUT_PROPERTY_REQUIRED_ADDED": "an input property is required that was not: old requests lack it",
    "INPUT_PROPERTY_REMOVED": "an input property old requests may send is refused (a closed object)",
    "OUTPUT_PROPERTY_REMOVED": "an output property callers read is gone",
    "OUTPUT_PROPERTY_NOW_OPTIONAL": "an output property callers rely on may now be missing",
    "OUTPUT_PROPERTY_ADDED_TO_CLOSED": "the output gains a property the old schema forbade",
    "TYPE_NARROWED": "the input accepts fewer types",
    "TYPE_WIDENED": "the output may hold types callers do not expect",
    "ENUM_VALUE_REMOVED": "an input value old requests may send is refused",
    "ENUM_VALUE_ADDED": "the output may hold a value callers do not know",
    "ENUM_ADDED": "the input is restricted to a list of values",
    "ENUM_REMOVED": "the output is no longer restricted to the values callers know",
    "CONST_CHANGED": "the one allowed value changed",
    "CONST_ADDED": "the input is restricted to one value",
    "CONST_REMOVED": "the output is no longer the one value callers know",
    "BOUND_TIGHTENED": "an input bound (length, size, range, multipleOf, uniqueItems) is tighter",
    "BOUND_LOOSENED": "an output bound callers rely on is looser or gone",
    "PATTERN_CHANGED": "a pattern changed (patterns are compared as text: only an identical one is safe)",
    "PATTERN_ADDED": "the input must match a pattern it did not have to",
    "PATTERN_REMOVED": "the output no longer promises its pattern",
    "FORMAT_CHANGED": "a format changed",
    "FORMAT_ADDED": "the input must have a format it did not have to",
    "FORMAT_REMOVED": "the output no longer promises its format",
    "ADDITIONAL_PROPERTIES_CLOSED": "the input refuses properties it used to ignore",
    "ADDITIONAL_PROPERTIES_OPENED": "the output may hold properties the old schema forbade",
    "UNION_NOT_COVERED": "no branch of the union provably covers the other side",
    "UNSUPPORTED_KEYWORD_CHANGED": "a keyword the check cannot reason about changed",
    "REF_UNRESOLVED": "a $ref could not be resolved",
    # notes (not breaking)
    "FUNCTION_ADDED": "a new function",
    "FUNCTION_ROLE_REMOVED": "a function requires one role less",
    "FUNCTION_TIMEOUT_CHANGED": "a function's timeout changed",
    "SERVICE_AUTH_RELAXED": "the service no longer requires a token",
    "INPUT_PROPERTY_ADDED": "an optional input property was added",
    "OUTPUT_PROPERTY_ADDED": "an output property was added",
}
"""Every rule id and what it means (the docs' table is built from the same words)."""

NOTE_RULES = frozenset(
    {
        "FUNCTION_ADDED",
        "FUNCTION_ROLE_REMOVED",
        "FUNCTION_TIMEOUT_CHANGED",
        "SERVICE_AUTH_RELAXED",
        "INPUT_PROPERTY_ADDED",
        "OUTPUT_PROPERTY_ADDED",
    }
)
_ADDITIONS = frozenset({"FUNCTION_ADDED", "INPUT_PROPERTY_ADDED", "OUTPUT_PROPERTY_ADDED"})

_ANNOTATIONS = frozenset(
    {
        "$schema", "$id", "$comment", "$defs", "definitions", "$anchor", "$dynamicAnchor", "$vocabulary",
        "title", "description", "default", "deprecated", "readOnly", "writeOnly", "examples",
        "contentEncoding", "contentMediaType", "contentSchema", "discriminator",
    }
)  # fmt: skip
"""Keywords that validate nothing (``discriminator`` is an OpenAPI hint pydantic writes)."""
_HANDLED = frozenset(
    {
        "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum", "exclusiveMinimum",
        "maxLength", "minLength", "pattern", "format", "maxItems", "minItems", "uniqueItems", "items",
        "prefixItems", "properties", "required", "additionalProperties", "maxProperties", "minProperties",
        "anyOf", "oneOf", "allOf", "$ref",
    }
)  # fmt: skip
"""Keywords the check reasons about; any other one in the schema callers hold to must not change."""
_OBJECT_SPLIT = ({"properties", "patternProperties", "additionalProperties"}, {"items", "prefixItems"})
_TYPES = ("null", "boolean", "object", "array", "number", "integer", "string")
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")


@dataclass(frozen=True, slots=True)
class Finding:
    """One difference: ``breaking`` ones block ``live`` until approved; the others are notes."""

    function: str
    direction: Direction
    path: str
    rule: str
    message: str
    breaking: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "function": self.function,
            "direction": self.direction,
            "path": self.path,
            "rule": self.rule,
            "message": self.message,
            "breaking": self.breaking,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Finding:
        return cls(
            function=str(raw["function"]),
            direction=raw["direction"],
            path=str(raw["path"]),
            rule=str(raw["rule"]),
            message=str(raw["message"]),
            breaking=bool(raw.get("breaking", True)),
        )

    def line(self) -> str:
        """``path: RULE: message``, as ``dormant diff`` prints it."""
        return f"{self.path}: {self.rule}: {self.message}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``compare`` found, breaking findings first (each group in path order)."""

    findings: tuple[Finding, ...]
    identical: bool
    """The two interfaces are the same for callers (same functions, schemas, roles, timeouts, auth)."""

    @property
    def breaking(self) -> bool:
        return any(f.breaking for f in self.findings)

    @property
    def breaks(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.breaking)

    @property
    def notes(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.breaking)

    @property
    def bump(self) -> Bump:
        """How the schema version moves: major (breaking), minor (an addition), patch, none."""
        if self.breaking:
            return "major"
        if any(f.rule in _ADDITIONS for f in self.findings):
            return "minor"
        return "none" if self.identical else "patch"

    @property
    def verdict(self) -> str:
        return "breaking" if self.breaking else "compatible"

    def summary(self, limit: int = 3) -> str:
        """One line: the verdict and the first ``limit`` breaking findings."""
        if not self.breaking:
            return f"compatible ({len(self.notes)} note(s))"
        shown = "; ".join(f.line() for f in self.breaks[:limit])
        more = len(self.breaks) - limit
        return f"breaking: {shown}" + (f"; and {more} more" if more > 0 else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "breaking": self.breaking,
            "bump": self.bump,
            "findings": [f.to_json() for f in self.findings],
        }


class InvalidInterface(ValueError):
    """A document that is not an interface (no ``functions`` object, a function that is not an object)."""


# --------------------------------------------------------------------------------------------- compare


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> Verdict:
    """The verdict for publishing ``new`` where callers were written against ``old``."""
    old_fns, new_fns = _functions(old, "old"), _functions(new, "new")
    findings: list[Finding] = []
    old_auth, new_auth = str(old.get("auth", "required")), str(new.get("auth", "required"))
    if old_auth != new_auth:
        if new_auth == "required":
            findings.append(
                Finding(
                    "*",
                    "service",
                    "auth",
                    "SERVICE_AUTH_REQUIRED",
                    f"auth was {old_auth!r}, now 'required': callers without a token are refused",
                )
            )
        else:
            findings.append(
                Finding(
                    "*",
                    "service",
                    "auth",
                    "SERVICE_AUTH_RELAXED",
                    f"auth was {old_auth!r}, now {new_auth!r}",
                    breaking=False,
                )
            )
    added = sorted(set(new_fns) - set(old_fns))
    for name in sorted(set(old_fns) - set(new_fns)):
        twin = next((a for a in added if _same_schemas(old_fns[name], new_fns[a])), None)
        if twin is not None:
            findings.append(
                Finding(
                    name,
                    "function",
                    name,
                    "FUNCTION_RENAMED",
                    f"{name} is gone; {twin} has its schemas (renamed?): callers still call {name}",
                )
            )
        else:
            findings.append(
                Finding(name, "function", name, "FUNCTION_REMOVED", f"{name} is gone: callers still call it")
            )
    for name in added:
        findings.append(Finding(name, "function", name, "FUNCTION_ADDED", f"new function {name}", False))
    for name in sorted(set(old_fns) & set(new_fns)):
        findings.extend(_compare_function(name, old_fns[name], new_fns[name]))
    ordered = sorted(findings, key=lambda f: (not f.breaking, f.path, f.rule))
    return Verdict(tuple(_dedupe(ordered)), identical=_caller_view(old) == _caller_view(new))


def _dedupe(findings: Iterable[Finding]) -> Iterator[Finding]:
    seen: set[tuple[str, str]] = set()
    for finding in findings:
        key = (finding.path, finding.rule)
        if key not in seen:
            seen.add(key)
            yield finding


def _functions(doc: Mapping[str, Any], which: str) -> dict[str, Mapping[str, Any]]:
    functions = doc.get("functions") if isinstance(doc, Mapping) else None
    if not isinstance(functions, Mapping):
        raise InvalidInterface(f"the {which} interface has no 'functions' object")
    for name, fn in functions.items():
        if not isinstance(fn, Mapping):
            raise InvalidInterface(f"function {name!r} of the {which} interface is not an object")
    return {str(k): v for k, v in functions.items()}


def _same_schemas(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return a.get("input") == b.get("input") and a.get("output") == b.get("output")


def _caller_view(doc: Mapping[str, Any]) -> Any:
    """What callers depend on (as ``interfaceHash`` covers it)."""
    return (
        doc.get("auth", "required"),
        {
            name: (fn.get("input"), fn.get("output"), fn.get("timeout"), sorted(fn.get("roles") or []))
            for name, fn in _functions(doc, "either").items()
        },
    )


def _compare_function(name: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Finding]:
    found: list[Finding] = []
    old_roles, new_roles = set(old.get("roles") or []), set(new.get("roles") or [])
    for role in sorted(new_roles - old_roles):
        found.append(
            Finding(
                name,
                "function",
                f"{name}.roles",
                "FUNCTION_ROLE_ADDED",
                f"{name} now requires role {role!r}: callers without it are refused",
            )
        )
    for role in sorted(old_roles - new_roles):
        found.append(
            Finding(
                name,
                "function",
                f"{name}.roles",
                "FUNCTION_ROLE_REMOVED",
                f"{name} no longer requires role {role!r}",
                breaking=False,
            )
        )
    if old.get("timeout") != new.get("timeout"):
        found.append(
            Finding(
                name,
                "function",
                f"{name}.timeout",
                "FUNCTION_TIMEOUT_CHANGED",
                f"timeout was {old.get('timeout')}, now {new.get('timeout')}",
                breaking=False,
            )
        )
    old_in, new_in = old.get("input", True), new.get("input", True)
    # inputs: every old request must still be accepted
    found.extend(_Check(name, "input", old_in, new_in).run(f"{name}.input"))
    old_out, new_out = old.get("output", True), new.get("output", True)
    # outputs: every new reply must still be what callers were promised
    found.extend(_Check(name, "output", new_out, old_out).run(f"{name}.output"))
    return found


# ------------------------------------------------------------------------------------- subset checking


def _strip(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in _ANNOTATIONS and not k.startswith("x-")}


def _has_ref(value: Any) -> bool:
    if isinstance(value, Mapping):
        return "$ref" in value or "$dynamicRef" in value or any(_has_ref(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_ref(v) for v in value)
    return False


def _types(schema: Mapping[str, Any]) -> set[str] | None:
    """The declared types (None: any)."""
    raw = schema.get("type")
    if raw is None:
        return None
    return {raw} if isinstance(raw, str) else {str(t) for t in raw}


def _covered(t: str, types: set[str]) -> bool:
    return t in types or (t == "integer" and "number" in types)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _values(schema: Mapping[str, Any]) -> list[Any] | None:
    """The values a schema is limited to by ``const`` or ``enum`` (None: not limited)."""
    if "const" in schema:
        return [schema["const"]]
    if isinstance(schema.get("enum"), list):
        return list(schema["enum"])
    return None


def _show(value: Any) -> str:
    text = f"'{value}'" if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


class _Check:
    """Prove "every instance of ``sub`` is one of ``sup``", reporting each place it cannot."""

    def __init__(self, function: str, direction: Literal["input", "output"], sub: Any, sup: Any) -> None:
        self.function = function
        self.direction = direction
        self.sub_root = sub
        self.sup_root = sup
        self.findings: list[Finding] = []
        self._seen: set[tuple[int, int]] = set()
        self._alive: list[tuple[Any, Any]] = []
        """The pairs in ``_seen``, kept alive so that no new object reuses their ids during the check."""
        self._validator: Any = None

    # the old and new sides, whichever sub and sup are
    def old_new(self, sub_value: Any, sup_value: Any) -> tuple[Any, Any]:
        return (sub_value, sup_value) if self.direction == "input" else (sup_value, sub_value)

    def run(self, path: str) -> list[Finding]:
        try:
            self.subset(self.sub_root, self.sup_root, path)
        except RecursionError:
            self.report(
                "unsupported", path, "the schema nests too deeply to compare: cannot prove compatible"
            )
        return self.findings

    def report(self, condition: str, path: str, message: str) -> None:
        rule = _RULES[condition][0 if self.direction == "input" else 1]
        self.findings.append(Finding(self.function, self.direction, path, rule, message))

    def rule(self, rule: str, path: str, message: str, *, breaking: bool = True) -> None:
        self.findings.append(Finding(self.function, self.direction, path, rule, message, breaking))

    # ------------------------------------------------------------------ resolution

    def resolve(self, schema: Any, root: Any, path: str, *, quiet: bool = False) -> Any:
        """``schema`` with its ``$ref`` replaced by the target (siblings kept as an ``allOf``); None
        (reported unless ``quiet``) when it cannot be resolved."""
        hops = 0
        while isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str):
            target = _pointer(root, schema["$ref"])
            if target is None:
                if not quiet:
                    self.report(
                        "ref", path, f"cannot resolve $ref {schema['$ref']!r}: cannot prove compatible"
                    )
                return None
            rest = _strip({k: v for k, v in schema.items() if k != "$ref"})
            schema = {"allOf": [target, rest]} if rest else target
            hops += 1
            if hops > 64:
                if quiet:
                    return None
                self.report("ref", path, "a $ref chain longer than 64: cannot prove compatible")
                return None
        return schema

    # ------------------------------------------------------------------ the check

    def subset(self, sub: Any, sup: Any, path: str) -> None:
        key = (id(sub), id(sup))
        if key in self._seen:  # a recursive schema: assume the pair holds (coinduction)
            return
        self._seen.add(key)
        self._alive.append((sub, sup))
        sub = self.resolve(sub, self.sub_root, path)
        sup = self.resolve(sup, self.sup_root, path)
        if sub is None or sup is None:
            return
        if sub is False or sup is True:
            return
        if sub is True:
            sub = {}
        if sup is False:
            self.report(
                "type",
                path,
                "the new schema allows nothing here"
                if self.direction == "input"
                else "the old schema allowed nothing here",
            )
            return
        sub, sup = _strip(sub), _strip(sup)
        if not sup:
            return
        if sub == sup and not _has_ref(sub):
            return
        if self._unions(sub, sup, path):
            return
        self._keywords(sub, sup, path)

    def _unions(self, sub: dict[str, Any], sup: dict[str, Any], path: str) -> bool:
        """Split ``anyOf``/``oneOf``/``allOf``; True when that settled the pair."""
        for word in ("anyOf", "oneOf"):
            if isinstance(sub.get(word), list):  # a union is inside sup when each of its branches is
                rest = {k: v for k, v in sub.items() if k != word}
                for i, branch in enumerate(sub[word]):
                    self.subset(_conjoin(rest, branch), sup, f"{path}.{word}.{i}")
                return True
        if isinstance(sub.get("allOf"), list):
            rest = {k: v for k, v in sub.items() if k != "allOf"}
            parts = [rest, *sub["allOf"]] if rest else list(sub["allOf"])
            merged = _merge_all([self.resolve(p, self.sub_root, path) for p in parts])
            if merged is not None:
                self.subset(merged, sup, path)
                return True
            for part in parts:  # enough: one part of the conjunction inside sup
                if not self._probe(part, sup, path):
                    return True
            self.report("union", f"{path}.allOf", "an allOf this check cannot merge: cannot prove compatible")
            return True
        if isinstance(sup.get("allOf"), list):
            rest = {k: v for k, v in sup.items() if k != "allOf"}
            if rest:
                self.subset(sub, rest, path)
            for i, branch in enumerate(sup["allOf"]):
                self.subset(sub, branch, f"{path}.allOf.{i}")
            return True
        for word in ("anyOf", "oneOf"):
            if not isinstance(sup.get(word), list):
                continue
            rest = {k: v for k, v in sup.items() if k != word}
            if rest:
                self.subset(sub, rest, path)
            branches = [self.resolve(b, self.sup_root, path, quiet=True) for b in sup[word]]
            fits = [i for i, b in enumerate(branches) if b is not None and not self._probe(sub, b, path)]
            if fits and word == "oneOf":
                others = [b for i, b in enumerate(branches) if i != fits[0]]
                if len(fits) > 1 or not all(self._disjoint(sub, b) for b in others):
                    self.report(
                        "union",
                        f"{path}.oneOf",
                        "cannot prove that exactly one oneOf branch matches: cannot prove compatible",
                    )
                return True
            if fits:
                return True
            sub_types = _types(sub)
            overlapping = [
                i
                for i, b in enumerate(branches)
                if isinstance(b, Mapping)
                and (
                    sub_types is None
                    or _types(b) is None
                    or any(_covered(t, _types(b) or set()) for t in sub_types)
                )
            ]
            if len(overlapping) == 1:  # the one branch it could be: its own differences are precise
                self.subset(sub, branches[overlapping[0]], f"{path}.{word}.{overlapping[0]}")
            else:
                old, new = self.old_new("the old schema", "the new schema")
                self.report(
                    "union",
                    f"{path}.{word}",
                    f"no {word} branch of {new if self.direction == 'input' else old} covers"
                    f" {old if self.direction == 'input' else new}: cannot prove compatible",
                )
            return True
        return False

    def _probe(self, sub: Any, sup: Any, path: str) -> list[Finding]:
        """The findings of ``sub`` in ``sup`` without reporting them."""
        saved, self.findings = self.findings, []
        seen = set(self._seen)
        try:
            self.subset(sub, sup, path)
            return self.findings
        finally:
            self.findings = saved
            self._seen = seen

    def _disjoint(self, sub: Mapping[str, Any], other: Any) -> bool:
        """Whether no instance of ``sub`` can match ``other`` (by type, or a const/enum property)."""
        if not isinstance(other, Mapping):
            return other is False
        sub_types, other_types = _types(sub), _types(other)
        if sub_types is not None and other_types is not None:
            if not any(
                _covered(t, other_types) or _covered(o, sub_types) for t in sub_types for o in other_types
            ):
                return True
        values, other_values = _values(sub), _values(other)
        if values is not None and other_values is not None and not any(v in other_values for v in values):
            return True
        sub_props, other_props = sub.get("properties") or {}, other.get("properties") or {}
        for name in set(sub.get("required") or []) & set(other.get("required") or []):
            a = self.resolve(sub_props.get(name), self.sub_root, "", quiet=True)
            b = self.resolve(other_props.get(name), self.sup_root, "", quiet=True)
            if isinstance(a, Mapping) and isinstance(b, Mapping):
                va, vb = _values(a), _values(b)
                if va is not None and vb is not None and not any(v in vb for v in va):
                    return True
        return False

    def _valid(self, value: Any, sup: Mapping[str, Any]) -> bool:
        from jsonschema import Draft202012Validator, FormatChecker  # lazy: only enum and const values need it

        if self._validator is None:
            root = self.sup_root if isinstance(self.sup_root, Mapping | bool) else True
            self._validator = Draft202012Validator(root, format_checker=FormatChecker())
        try:
            return bool(self._validator.evolve(schema=sup).is_valid(value))
        except Exception:  # an unresolvable reference, a bad pattern: not provably valid
            return False

    def _keywords(self, sub: dict[str, Any], sup: dict[str, Any], path: str) -> None:
        values = _values(sub)
        if values is not None:  # sub is a list of values: each must be valid under sup
            bad = [v for v in values if not self._valid(v, sup)]
            if bad:
                if "const" in sub and "const" in sup:
                    old, new = self.old_new(sub["const"], sup["const"])
                    self.report("const_changed", f"{path}.const", f"const was {_show(old)}, now {_show(new)}")
                else:
                    word = "const" if "const" in sup else "enum"
                    shown = ", ".join(_show(v) for v in bad)
                    what = (
                        "no longer accepted" if self.direction == "input" else "not allowed by the old schema"
                    )
                    self.report("enum_value", f"{path}.{word}", f"{shown}: {what}")
            return
        sup_values = _values(sup)
        if sup_values is not None:
            word = "const" if "const" in sup else "enum"
            cond = "const_added" if word == "const" else "enum_added"
            if self.direction == "input":
                self.report(cond, f"{path}.{word}", f"the input is now limited to {_show(sup_values)}")
            else:
                self.report(
                    cond, f"{path}.{word}", f"the output was limited to {_show(sup_values)}, now it is not"
                )
            return
        sub_types, sup_types = _types(sub), _types(sup)
        types = sub_types
        if sup_types is not None:
            if sub_types is None:
                old, new = self.old_new("any type", "/".join(sorted(sup_types)))
                self.report("type", f"{path}.type", f"type was {old}, now {new}")
                types = sup_types
            else:
                extra = sorted(t for t in sub_types if not _covered(t, sup_types))
                if extra:
                    old, new = self.old_new(sub.get("type"), sup.get("type"))
                    self.report("type", f"{path}.type", f"type was {_show(old)}, now {_show(new)}")
                types = {t for t in sub_types if _covered(t, sup_types)}
        kinds = set(_TYPES) if types is None else types
        if "string" in kinds:
            self._strings(sub, sup, path)
        if kinds & {"number", "integer"}:
            self._numbers(sub, sup, path)
        if "array" in kinds:
            self._arrays(sub, sup, path)
        if "object" in kinds:
            self._objects(sub, sup, path)
        for word in sorted(set(sup) - _HANDLED):
            if sub.get(word) != sup[word] or _has_ref(sup[word]):
                old, new = self.old_new(sub.get(word), sup[word])
                self.report(
                    "unsupported",
                    f"{path}.{word}",
                    f"{word} changed (was {_show(old)}, now {_show(new)}): cannot prove compatible",
                )

    # ------------------------------------------------------------------ per type

    def _bound(self, sub: Mapping[str, Any], sup: Mapping[str, Any], word: str, path: str, low: bool) -> None:
        if word not in sup:
            return
        limit, mine = sup[word], sub.get(word)
        if word == "uniqueItems":
            if limit is True and mine is not True:
                old, new = self.old_new("not required", "required")
                self.report("bound", f"{path}.{word}", f"unique items were {old}, now {new}")
            return
        if mine is None or (mine < limit if low else mine > limit):
            self._bound_finding(f"{path}.{word}", word, mine, limit)

    def _bound_finding(self, path: str, word: str, sub_value: Any, sup_value: Any) -> None:
        old, new = self.old_new(sub_value, sup_value)
        if old is None:
            text = f"{word} {_show(new)} added"
        elif new is None:
            text = f"{word} {_show(old)} removed"
        else:
            text = f"{word} was {_show(old)}, now {_show(new)}"
        self.report("bound", path, text)

    def _strings(self, sub: Mapping[str, Any], sup: Mapping[str, Any], path: str) -> None:
        self._bound(sub, sup, "minLength", path, low=True)
        self._bound(sub, sup, "maxLength", path, low=False)
        if "pattern" in sup and sub.get("pattern") != sup["pattern"]:
            old, new = self.old_new(sub.get("pattern"), sup["pattern"])
            if "pattern" in sub:
                self.report(
                    "pattern_changed", f"{path}.pattern", f"pattern was {_show(old)}, now {_show(new)}"
                )
            else:
                self.report(
                    "pattern_added",
                    f"{path}.pattern",
                    f"pattern {_show(new)} added" if new is not None else f"pattern {_show(old)} removed",
                )
        if "format" in sup and sub.get("format") != sup["format"]:
            old, new = self.old_new(sub.get("format"), sup["format"])
            if "format" in sub:
                self.report("format_changed", f"{path}.format", f"format was {_show(old)}, now {_show(new)}")
            else:
                self.report(
                    "format_added",
                    f"{path}.format",
                    f"format {_show(new)} added" if new is not None else f"format {_show(old)} removed",
                )

    def _numbers(self, sub: Mapping[str, Any], sup: Mapping[str, Any], path: str) -> None:
        for low in (True, False):
            sup_bound, sup_word = _number_bound(sup, low)
            if sup_bound is None:
                continue
            sub_bound, sub_word = _number_bound(sub, low)
            tighter = (
                sub_bound is None
                or (sup_bound[0] > sub_bound[0] if low else sup_bound[0] < sub_bound[0])
                or (sup_bound[0] == sub_bound[0] and sup_bound[1] and not sub_bound[1])
            )
            if tighter:
                sub_text = "none" if sub_bound is None else _bound_text(sub_word, sub_bound)
                old, new = self.old_new(sub_text, _bound_text(sup_word, sup_bound))
                self.report("bound", f"{path}.{sup_word}", f"was {old}, now {new}")
        if "multipleOf" in sup:
            m, k = sup["multipleOf"], sub.get("multipleOf")
            ok = isinstance(k, int | float) and k != 0 and math.isclose(round(k / m) * m, k)
            if not ok:
                self._bound_finding(f"{path}.multipleOf", "multipleOf", k, m)

    def _arrays(self, sub: Mapping[str, Any], sup: Mapping[str, Any], path: str) -> None:
        self._bound(sub, sup, "minItems", path, low=True)
        self._bound(sub, sup, "maxItems", path, low=False)
        self._bound(sub, sup, "uniqueItems", path, low=True)
        sub_prefix, sup_prefix = sub.get("prefixItems") or [], sup.get("prefixItems") or []
        sub_items, sup_items = sub.get("items", True), sup.get("items", True)
        for i in range(max(len(sub_prefix), len(sup_prefix))):
            a = sub_prefix[i] if i < len(sub_prefix) else sub_items
            b = sup_prefix[i] if i < len(sup_prefix) else sup_items
            self.subset(a, b, f"{path}.prefixItems.{i}")
        if "items" in sup or "items" in sub:
            self.subset(sub_items, sup_items, f"{path}.items")

    def _objects(self, sub: Mapping[str, Any], sup: Mapping[str, Any], path: str) -> None:
        self._bound(sub, sup, "minProperties", path, low=True)
        self._bound(sub, sup, "maxProperties", path, low=False)
        sub_props: Mapping[str, Any] = sub.get("properties") or {}
        sup_props: Mapping[str, Any] = sup.get("properties") or {}
        sub_req, sup_req = set(sub.get("required") or []), set(sup.get("required") or [])
        sub_extra, sup_extra = sub.get("additionalProperties", True), sup.get("additionalProperties", True)
        input_side = self.direction == "input"
        for name in sorted(sup_req - sub_req):
            where = f"{path}.properties.{name}"
            if input_side:
                was = "was optional" if name in sub_props else "is new"
                self.rule("INPUT_PROPERTY_REQUIRED_ADDED", where, f"{name} {was} and is now required")
            elif name in sub_props:
                self.rule("OUTPUT_PROPERTY_NOW_OPTIONAL", where, f"{name} was required and is now optional")
            else:
                self.rule("OUTPUT_PROPERTY_REMOVED", where, f"{name} was required and is gone")
        for name in sorted(sub_props):
            where = f"{path}.properties.{name}"
            if name in sup_props:
                self.subset(sub_props[name], sup_props[name], where)
            elif sup_extra is False:
                if input_side:
                    self.report("property_not_allowed", where, f"{name} was accepted and is now refused")
                else:
                    self.report(
                        "property_not_allowed",
                        where,
                        f"{name} is new, and the old schema allowed no other properties",
                    )
            elif isinstance(sup_extra, Mapping):
                self.subset(sub_props[name], sup_extra, where)
            elif not input_side:
                self.rule("OUTPUT_PROPERTY_ADDED", where, f"new output property {name}", breaking=False)
        for name in sorted(set(sup_props) - set(sub_props)):
            where = f"{path}.properties.{name}"
            if sub_extra is False:
                if input_side and name not in sup_req:
                    self.rule(
                        "INPUT_PROPERTY_ADDED", where, f"new optional input property {name}", breaking=False
                    )
                continue  # sub never holds it
            if isinstance(sub_extra, Mapping):
                self.subset(sub_extra, sup_props[name], where)
            elif input_side:
                if name not in sup_req:
                    self.rule(
                        "INPUT_PROPERTY_ADDED", where, f"new optional input property {name}", breaking=False
                    )
            elif name not in sup_req:
                self.rule("OUTPUT_PROPERTY_REMOVED", where, f"{name} is gone")
        if sup_extra is False and sub_extra is not False:
            self.report(
                "closed",
                f"{path}.additionalProperties",
                "additionalProperties is now false: other properties are refused"
                if input_side
                else "additionalProperties was false: the output may now hold other properties",
            )
        elif isinstance(sup_extra, Mapping) and sub_extra is not False:
            self.subset(sub_extra, sup_extra, f"{path}.additionalProperties")


def _number_bound(schema: Mapping[str, Any], low: bool) -> tuple[tuple[float, bool] | None, str]:
    """(value, exclusive) of the tighter lower (or upper) bound, and the keyword giving it."""
    inclusive_word, exclusive_word = (
        ("minimum", "exclusiveMinimum") if low else ("maximum", "exclusiveMaximum")
    )
    inclusive, exclusive = schema.get(inclusive_word), schema.get(exclusive_word)
    candidates: list[tuple[tuple[float, bool], str]] = []
    if isinstance(inclusive, int | float) and not isinstance(inclusive, bool):
        candidates.append(((float(inclusive), False), inclusive_word))
    if isinstance(exclusive, int | float) and not isinstance(exclusive, bool):
        candidates.append(((float(exclusive), True), exclusive_word))
    if not candidates:
        return None, inclusive_word

    def tightness(c: tuple[tuple[float, bool], str]) -> tuple[float, bool]:
        value, excl = c[0]
        return (value, excl) if low else (-value, excl)

    best = max(candidates, key=tightness)
    return best[0], best[1]


def _bound_text(word: str, bound: tuple[float, bool]) -> str:
    value = bound[0]
    return f"{word} {int(value) if value.is_integer() else value}"


def _pointer(root: Any, ref: str) -> Any:
    """The schema ``ref`` (``#`` or ``#/$defs/X``) points at inside ``root``, or None."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node = root
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if part == "definitions" and isinstance(node, Mapping) and part not in node:
            part = "$defs"  # codegen reads definitions as $defs
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _conjoin(rest: Mapping[str, Any], branch: Any) -> Any:
    """``rest`` and ``branch`` as one schema (merged when that keeps the meaning, else an allOf)."""
    if not rest:
        return branch
    merged = _merge_all([rest, branch])
    return merged if merged is not None else {"allOf": [dict(rest), branch]}


def _merge_all(parts: list[Any]) -> dict[str, Any] | None:
    """The parts as one schema when their keywords do not overlap (and no part splits a group of
    keywords that act together, such as properties and additionalProperties), else None."""
    merged: dict[str, Any] = {}
    for part in parts:
        if part is True:
            continue
        if not isinstance(part, Mapping):
            return None
        clean = _strip(part)
        if set(clean) & set(merged):
            return None
        for group in _OBJECT_SPLIT:
            if group & set(clean) and group & set(merged):
                return None
        merged.update(clean)
    return merged


# ------------------------------------------------------------------------------- the schema version


def parse_semver(text: str) -> tuple[int, int, int]:
    match = _SEMVER.match(text)
    if not match:
        raise ValueError(f"not a schema version (MAJOR.MINOR.PATCH): {text!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3))


def next_schema_version(base: str | None, bump: Bump, taken: Iterable[str] = ()) -> str:
    """The schema version after ``base`` (None: the first, ``1.0.0``) for a change of kind ``bump``,
    past every version in ``taken`` on the same line (two versions published from the same base never
    share a number)."""
    if base is None:
        return FIRST_SCHEMA_VERSION
    major, minor, patch = parse_semver(base)
    used = [parse_semver(t) for t in taken if _SEMVER.match(t)]
    if bump == "none":
        return base
    if bump == "major":
        return f"{max([major, *(u[0] for u in used)]) + 1}.0.0"
    if bump == "minor":
        top = max([minor, *(u[1] for u in used if u[0] == major)])
        return f"{major}.{top + 1}.0"
    top = max([patch, *(u[2] for u in used if u[:2] == (major, minor))])
    return f"{major}.{minor}.{top + 1}"


def semver_sorted(versions: Iterable[str], *, newest_first: bool = True) -> list[str]:
    unique = {v for v in versions if _SEMVER.match(v)}
    return sorted(unique, key=parse_semver, reverse=newest_first)


def schema_version_document(
    interface: Mapping[str, Any], schema_version: str, backward_compatible: Iterable[str]
) -> dict[str, Any]:
    """The seed's schema version document: ``schemaVersion``, ``backwardCompatible`` (newest first) and
    per function the names of its input and output models."""
    return {
        "schemaVersion": schema_version,
        "backwardCompatible": semver_sorted(backward_compatible),
        "functions": {
            name: {"input": fn.get("inputModel"), "output": fn.get("outputModel")}
            for name, fn in sorted(_functions(interface, "new").items())
        },
    }


@dataclass(frozen=True, slots=True)
class Earlier:
    """An earlier version, for ``backward_compatible``: its number, schema version and interface."""

    version: int
    schema_version: str | None
    interface: Mapping[str, Any] = field(repr=False)


def backward_compatible(interface: Mapping[str, Any], earlier: Iterable[Earlier]) -> list[str]:
    """The schema versions of ``earlier`` versions that ``interface`` is compatible with (newest first)."""
    found: set[str] = set()
    for item in earlier:
        if item.schema_version is None or item.schema_version in found:
            continue
        try:
            if not compare(item.interface, interface).breaking:
                found.add(item.schema_version)
        except InvalidInterface:
            continue
    return semver_sorted(found)
