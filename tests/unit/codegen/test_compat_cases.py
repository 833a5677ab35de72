"""``dormant_codegen.compat``: a table of schema pairs, each with its expected verdict and the exact set
of breaking (rule, path) pairs, across inputs and outputs; then functions, roles, auth, the notes and
the schema version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from dormant_codegen.compat import (
    RULES,
    Earlier,
    InvalidInterface,
    backward_compatible,
    compare,
    next_schema_version,
    schema_version_document,
)

FN = "createUser"
S = "string"


def obj(props: dict[str, Any], required: tuple[str, ...] = (), closed: bool | None = None, **kw: Any) -> Any:
    schema: dict[str, Any] = {"type": "object", "properties": props, **kw}
    if required:
        schema["required"] = list(required)
    if closed is not None:
        schema["additionalProperties"] = not closed
    return schema


def iface(
    input: Any = None, output: Any = None, *, roles: tuple[str, ...] = (), timeout: int = 10
) -> dict[str, Any]:
    return {
        "service": "user-service",
        "auth": "required",
        "functions": {
            FN: {
                "input": input if input is not None else obj({}),
                "output": output if output is not None else obj({}),
                "timeout": timeout,
                "roles": list(roles),
            }
        },
    }


@dataclass(frozen=True)
class Case:
    id: str
    direction: str
    old: Any
    new: Any
    breaks: set[tuple[str, str]] = field(default_factory=set)
    """Expected breaking findings as (rule, path after ``createUser.<direction>``)."""
    notes: set[str] = field(default_factory=set)
    """Rule ids expected among the notes (a subset check)."""


P = ".properties"
CASES = [
    # ---------------------------------------------------------------- inputs (backward compatible)
    Case("in-identical", "input", obj({"a": {"type": S}}, ("a",)), obj({"a": {"type": S}}, ("a",))),
    Case(
        "in-required-added",
        "input",
        obj({"a": {"type": S}}),
        obj({"a": {"type": S}, "email": {"type": S}}, ("email",)),
        {("INPUT_PROPERTY_REQUIRED_ADDED", f"{P}.email")},
    ),
    Case(
        "in-optional-made-required",
        "input",
        obj({"a": {"type": S}}),
        obj({"a": {"type": S}}, ("a",)),
        {("INPUT_PROPERTY_REQUIRED_ADDED", f"{P}.a")},
    ),
    Case(
        "in-optional-added",
        "input",
        obj({"a": {"type": S}}, closed=True),
        obj({"a": {"type": S}, "b": {"type": "integer"}}, closed=True),
        notes={"INPUT_PROPERTY_ADDED"},
    ),
    Case("in-required-dropped", "input", obj({"a": {"type": S}}, ("a",)), obj({"a": {"type": S}})),
    Case(
        "in-type-narrowed",
        "input",
        obj({"n": {"type": "number"}}),
        obj({"n": {"type": "integer"}}),
        {("TYPE_NARROWED", f"{P}.n.type")},
    ),
    Case("in-type-widened-ok", "input", obj({"n": {"type": "integer"}}), obj({"n": {"type": "number"}})),
    Case(
        "in-null-removed",
        "input",
        obj({"a": {"type": [S, "null"]}}),
        obj({"a": {"type": S}}),
        {("TYPE_NARROWED", f"{P}.a.type")},
    ),
    Case("in-null-added-ok", "input", obj({"a": {"type": S}}), obj({"a": {"type": [S, "null"]}})),
    Case(
        "in-enum-value-removed",
        "input",
        obj({"r": {"enum": ["a", "b", "c"]}}),
        obj({"r": {"enum": ["a", "b"]}}),
        {("ENUM_VALUE_REMOVED", f"{P}.r.enum")},
    ),
    Case("in-enum-value-added-ok", "input", obj({"r": {"enum": ["a"]}}), obj({"r": {"enum": ["a", "b"]}})),
    Case(
        "in-enum-introduced",
        "input",
        obj({"r": {"type": S}}),
        obj({"r": {"type": S, "enum": ["a"]}}),
        {("ENUM_ADDED", f"{P}.r.enum")},
    ),
    Case(
        "in-maxlength-tightened",
        "input",
        obj({"email": {"type": S, "maxLength": 100}}),
        obj({"email": {"type": S, "maxLength": 50}}),
        {("BOUND_TIGHTENED", f"{P}.email.maxLength")},
    ),
    Case(
        "in-maxlength-loosened-ok",
        "input",
        obj({"email": {"type": S, "maxLength": 50}}),
        obj({"email": {"type": S, "maxLength": 100}}),
    ),
    Case(
        "in-minlength-added",
        "input",
        obj({"email": {"type": S}}),
        obj({"email": {"type": S, "minLength": 3}}),
        {("BOUND_TIGHTENED", f"{P}.email.minLength")},
    ),
    Case(
        "in-minimum-raised",
        "input",
        obj({"n": {"type": "integer", "minimum": 0}}),
        obj({"n": {"type": "integer", "minimum": 1}}),
        {("BOUND_TIGHTENED", f"{P}.n.minimum")},
    ),
    Case(
        "in-exclusive-maximum-added",
        "input",
        obj({"n": {"type": "number", "maximum": 10}}),
        obj({"n": {"type": "number", "exclusiveMaximum": 10}}),
        {("BOUND_TIGHTENED", f"{P}.n.exclusiveMaximum")},
    ),
    Case(
        "in-multipleof-added",
        "input",
        obj({"n": {"type": "integer"}}),
        obj({"n": {"type": "integer", "multipleOf": 5}}),
        {("BOUND_TIGHTENED", f"{P}.n.multipleOf")},
    ),
    Case(
        "in-maxitems-tightened",
        "input",
        obj({"tags": {"type": "array", "items": {"type": S}, "maxItems": 10}}),
        obj({"tags": {"type": "array", "items": {"type": S}, "maxItems": 5}}),
        {("BOUND_TIGHTENED", f"{P}.tags.maxItems")},
    ),
    Case(
        "in-unique-items-added",
        "input",
        obj({"tags": {"type": "array", "items": {"type": S}}}),
        obj({"tags": {"type": "array", "items": {"type": S}, "uniqueItems": True}}),
        {("BOUND_TIGHTENED", f"{P}.tags.uniqueItems")},
    ),
    Case(
        "in-array-items-narrowed",
        "input",
        obj({"tags": {"type": "array", "items": {"type": S}}}),
        obj({"tags": {"type": "array", "items": {"type": S, "maxLength": 8}}}),
        {("BOUND_TIGHTENED", f"{P}.tags.items.maxLength")},
    ),
    Case(
        "in-pattern-changed",
        "input",
        obj({"id": {"type": S, "pattern": "^[a-z]+$"}}),
        obj({"id": {"type": S, "pattern": "^[a-z0-9]+$"}}),
        {("PATTERN_CHANGED", f"{P}.id.pattern")},
    ),
    Case(
        "in-pattern-added",
        "input",
        obj({"id": {"type": S}}),
        obj({"id": {"type": S, "pattern": "^[a-z]+$"}}),
        {("PATTERN_ADDED", f"{P}.id.pattern")},
    ),
    Case(
        "in-pattern-removed-ok", "input", obj({"id": {"type": S, "pattern": "^a$"}}), obj({"id": {"type": S}})
    ),
    Case(
        "in-format-added",
        "input",
        obj({"email": {"type": S}}),
        obj({"email": {"type": S, "format": "email"}}),
        {("FORMAT_ADDED", f"{P}.email.format")},
    ),
    Case(
        "in-additional-closed",
        "input",
        obj({"a": {"type": S}}),
        obj({"a": {"type": S}}, closed=True),
        {("ADDITIONAL_PROPERTIES_CLOSED", ".additionalProperties")},
    ),
    Case(
        "in-property-removed-closed",
        "input",
        obj({"a": {"type": S}, "b": {"type": S}}, closed=True),
        obj({"a": {"type": S}}, closed=True),
        {("INPUT_PROPERTY_REMOVED", f"{P}.b")},
    ),
    Case(
        "in-nested-object-required",
        "input",
        obj({"addr": obj({"city": {"type": S}})}),
        obj({"addr": obj({"city": {"type": S}, "zip": {"type": S}}, ("zip",))}),
        {("INPUT_PROPERTY_REQUIRED_ADDED", f"{P}.addr{P}.zip")},
    ),
    Case(
        "in-ref-defs-tightened",
        "input",
        {**obj({"addr": {"$ref": "#/$defs/Addr"}}), "$defs": {"Addr": obj({"city": {"type": S}})}},
        {
            **obj({"addr": {"$ref": "#/$defs/Addr"}}),
            "$defs": {"Addr": obj({"city": {"type": S, "maxLength": 5}})},
        },
        {("BOUND_TIGHTENED", f"{P}.addr{P}.city.maxLength")},
    ),
    Case(
        "in-ref-same-name-other-target",
        "input",
        {**obj({"a": {"$ref": "#/$defs/X"}}), "$defs": {"X": {"type": "number"}}},
        {**obj({"a": {"$ref": "#/$defs/X"}}), "$defs": {"X": {"type": "integer"}}},
        {("TYPE_NARROWED", f"{P}.a.type")},
    ),
    Case(
        "in-ref-inlined-ok",
        "input",
        {**obj({"a": {"$ref": "#/$defs/X"}}), "$defs": {"X": {"type": S}}},
        obj({"a": {"type": S}}),
    ),
    Case(
        "in-recursive-ref-ok",
        "input",
        {"$ref": "#/$defs/Node", "$defs": {"Node": obj({"next": {"$ref": "#/$defs/Node"}})}},
        {
            "$ref": "#/$defs/Node",
            "$defs": {"Node": obj({"next": {"$ref": "#/$defs/Node"}, "v": {"type": S}})},
        },
    ),
    Case(
        "in-optional-anyof-null-removed",
        "input",
        obj({"a": {"anyOf": [{"type": S}, {"type": "null"}], "default": None}}),
        obj({"a": {"type": S}}),
        {("TYPE_NARROWED", f"{P}.a.anyOf.1.type")},
    ),
    Case(
        "in-anyof-branch-added-ok",
        "input",
        obj({"a": {"type": S}}),
        obj({"a": {"anyOf": [{"type": S}, {"type": "integer"}]}}),
    ),
    Case(
        "in-oneof-overlapping-unprovable",
        "input",
        obj({"a": {"type": S}}),
        obj({"a": {"oneOf": [{"type": S}, {"type": S, "maxLength": 3}]}}),
        {("UNION_NOT_COVERED", f"{P}.a.oneOf")},
    ),
    Case(
        "in-const-changed",
        "input",
        obj({"kind": {"const": "v1"}}),
        obj({"kind": {"const": "v2"}}),
        {("CONST_CHANGED", f"{P}.kind.const")},
    ),
    Case(
        "in-not-changed-unprovable",
        "input",
        obj({"a": {"type": S, "not": {"const": "x"}}}),
        obj({"a": {"type": S, "not": {"enum": ["x", "y"]}}}),
        {("UNSUPPORTED_KEYWORD_CHANGED", f"{P}.a.not")},
    ),
    Case(
        "in-allof-requires",
        "input",
        obj({"a": {"type": S}}),
        {"allOf": [obj({"a": {"type": S}}), {"required": ["a"]}]},
        {("INPUT_PROPERTY_REQUIRED_ADDED", ".allOf.1.properties.a")},
    ),
    Case(
        "in-prefix-items-narrowed",
        "input",
        obj({"pt": {"type": "array", "prefixItems": [{"type": "number"}, {"type": "number"}]}}),
        obj({"pt": {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "number"}]}}),
        {("TYPE_NARROWED", f"{P}.pt.prefixItems.0.type")},
    ),
    # --------------------------------------------------------------- outputs (forward compatible)
    Case(
        "out-additional-properties-schema-widened",
        "output",
        {"type": "object", "additionalProperties": {"type": S}},
        {"type": "object", "additionalProperties": {"type": [S, "integer"]}},
        {("TYPE_WIDENED", ".additionalProperties.type")},
    ),
    Case(
        "out-many-union-branches-each-checked",
        "output",
        obj({"v": {"anyOf": [{"type": S, "maxLength": 5}, {"type": "integer"}]}}),
        obj({"v": {"anyOf": [{"type": S, "maxLength": 5}] * 3 + [{"type": S}] + [{"type": "integer"}] * 3}}),
        {("BOUND_LOOSENED", f"{P}.v.anyOf.3.anyOf.0.maxLength")},
    ),
    Case("out-identical", "output", obj({"id": {"type": S}}, ("id",)), obj({"id": {"type": S}}, ("id",))),
    Case(
        "out-required-removed",
        "output",
        obj({"id": {"type": S}, "name": {"type": S}}, ("id", "name")),
        obj({"id": {"type": S}}, ("id",)),
        {("OUTPUT_PROPERTY_REMOVED", f"{P}.name")},
    ),
    Case(
        "out-optional-removed",
        "output",
        obj({"id": {"type": S}, "nick": {"type": S}}, ("id",)),
        obj({"id": {"type": S}}, ("id",)),
        {("OUTPUT_PROPERTY_REMOVED", f"{P}.nick")},
    ),
    Case(
        "out-now-optional",
        "output",
        obj({"id": {"type": S}}, ("id",)),
        obj({"id": {"type": S}}),
        {("OUTPUT_PROPERTY_NOW_OPTIONAL", f"{P}.id")},
    ),
    Case(
        "out-property-added-ok",
        "output",
        obj({"id": {"type": S}}, ("id",)),
        obj({"id": {"type": S}, "createdAt": {"type": S, "format": "date-time"}}, ("id", "createdAt")),
        notes={"OUTPUT_PROPERTY_ADDED"},
    ),
    Case(
        "out-property-added-to-closed",
        "output",
        obj({"id": {"type": S}}, ("id",), closed=True),
        obj({"id": {"type": S}, "x": {"type": S}}, ("id",), closed=True),
        {("OUTPUT_PROPERTY_ADDED_TO_CLOSED", f"{P}.x")},
    ),
    Case(
        "out-type-widened",
        "output",
        obj({"n": {"type": "integer"}}, ("n",)),
        obj({"n": {"type": "number"}}, ("n",)),
        {("TYPE_WIDENED", f"{P}.n.type")},
    ),
    Case(
        "out-nullable",
        "output",
        obj({"a": {"type": S}}, ("a",)),
        obj({"a": {"type": [S, "null"]}}, ("a",)),
        {("TYPE_WIDENED", f"{P}.a.type")},
    ),
    Case("out-type-narrowed-ok", "output", obj({"n": {"type": "number"}}), obj({"n": {"type": "integer"}})),
    Case(
        "out-enum-value-added",
        "output",
        obj({"s": {"enum": ["on", "off"]}}),
        obj({"s": {"enum": ["on", "off", "broken"]}}),
        {("ENUM_VALUE_ADDED", f"{P}.s.enum")},
    ),
    Case(
        "out-enum-value-removed-ok",
        "output",
        obj({"s": {"enum": ["on", "off"]}}),
        obj({"s": {"enum": ["on"]}}),
    ),
    Case(
        "out-enum-dropped",
        "output",
        obj({"s": {"type": S, "enum": ["on"]}}),
        obj({"s": {"type": S}}),
        {("ENUM_REMOVED", f"{P}.s.enum")},
    ),
    Case(
        "out-maxlength-removed",
        "output",
        obj({"name": {"type": S, "maxLength": 100}}),
        obj({"name": {"type": S}}),
        {("BOUND_LOOSENED", f"{P}.name.maxLength")},
    ),
    Case(
        "out-maxlength-tightened-ok",
        "output",
        obj({"name": {"type": S, "maxLength": 100}}),
        obj({"name": {"type": S, "maxLength": 50}}),
    ),
    Case(
        "out-minimum-lowered",
        "output",
        obj({"n": {"type": "integer", "minimum": 1}}),
        obj({"n": {"type": "integer", "minimum": 0}}),
        {("BOUND_LOOSENED", f"{P}.n.minimum")},
    ),
    Case(
        "out-format-removed",
        "output",
        obj({"at": {"type": S, "format": "date-time"}}),
        obj({"at": {"type": S}}),
        {("FORMAT_REMOVED", f"{P}.at.format")},
    ),
    Case(
        "out-format-changed",
        "output",
        obj({"at": {"type": S, "format": "date-time"}}),
        obj({"at": {"type": S, "format": "date"}}),
        {("FORMAT_CHANGED", f"{P}.at.format")},
    ),
    Case(
        "out-pattern-removed",
        "output",
        obj({"id": {"type": S, "pattern": "^u-"}}),
        obj({"id": {"type": S}}),
        {("PATTERN_REMOVED", f"{P}.id.pattern")},
    ),
    Case(
        "out-additional-opened",
        "output",
        obj({"id": {"type": S}}, closed=True),
        obj({"id": {"type": S}}),
        {("ADDITIONAL_PROPERTIES_OPENED", ".additionalProperties")},
    ),
    Case(
        "out-array-items-widened",
        "output",
        obj({"ids": {"type": "array", "items": {"type": "integer"}}}),
        obj({"ids": {"type": "array", "items": {"type": ["integer", "null"]}}}),
        {("TYPE_WIDENED", f"{P}.ids.items.type")},
    ),
    Case(
        "out-maxitems-removed",
        "output",
        obj({"ids": {"type": "array", "maxItems": 10}}),
        obj({"ids": {"type": "array"}}),
        {("BOUND_LOOSENED", f"{P}.ids.maxItems")},
    ),
    Case(
        "out-anyof-null-added",
        "output",
        obj({"a": {"type": S}}, ("a",)),
        obj({"a": {"anyOf": [{"type": S}, {"type": "null"}]}}, ("a",)),
        {("TYPE_WIDENED", f"{P}.a.anyOf.1.type")},
    ),
    Case(
        "out-anyof-branch-removed-ok",
        "output",
        obj({"a": {"anyOf": [{"type": S}, {"type": "null"}]}}),
        obj({"a": {"type": S}}),
    ),
    Case(
        "out-discriminated-oneof-ok",
        "output",
        {
            "oneOf": [
                obj({"kind": {"const": "a"}, "x": {"type": S}}, ("kind",)),
                obj({"kind": {"const": "b"}, "y": {"type": S}}, ("kind",)),
            ]
        },
        obj({"kind": {"const": "a"}, "x": {"type": S}}, ("kind",)),
    ),
    Case(
        "out-ref-nested-removed",
        "output",
        {**obj({"u": {"$ref": "#/$defs/U"}}, ("u",)), "$defs": {"U": obj({"id": {"type": S}}, ("id",))}},
        {**obj({"u": {"$ref": "#/$defs/U"}}, ("u",)), "$defs": {"U": obj({"name": {"type": S}})}},
        {("OUTPUT_PROPERTY_REMOVED", f"{P}.u{P}.id")},
    ),
    Case(
        "out-const-removed",
        "output",
        obj({"v": {"const": 1}}),
        obj({"v": {"type": "integer"}}),
        {("CONST_REMOVED", f"{P}.v.const")},
    ),
    Case(
        "out-unresolvable-ref",
        "output",
        obj({"a": {"type": S}}),
        obj({"a": {"$ref": "#/$defs/Missing"}}),
        {("REF_UNRESOLVED", f"{P}.a")},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_schema_pair(case: Case) -> None:
    if case.direction == "input":
        old, new = iface(input=case.old), iface(input=case.new)
    else:
        old, new = iface(output=case.old), iface(output=case.new)
    verdict = compare(old, new)
    prefix = f"{FN}.{case.direction}"
    got = {(f.rule, f.path) for f in verdict.breaks}
    assert got == {(rule, prefix + path) for rule, path in case.breaks}, [f.line() for f in verdict.findings]
    assert verdict.verdict == ("breaking" if case.breaks else "compatible")
    assert case.notes <= {f.rule for f in verdict.notes}
    for finding in verdict.findings:
        assert finding.rule in RULES and finding.function == FN and finding.message
        assert finding.direction == case.direction


def test_the_table_covers_both_directions_and_both_verdicts() -> None:
    kinds = {(c.direction, bool(c.breaks)) for c in CASES}
    assert kinds == {("input", True), ("input", False), ("output", True), ("output", False)}
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)


def test_removed_and_renamed_functions_break() -> None:
    old = iface(input=obj({"a": {"type": S}}))
    new = {**old, "functions": {"getUser": {"input": {"type": "object"}, "output": {}, "roles": []}}}
    verdict = compare(old, new)
    assert [(f.rule, f.path) for f in verdict.breaks] == [("FUNCTION_REMOVED", FN)]
    assert [f.rule for f in verdict.notes] == ["FUNCTION_ADDED"]
    renamed = {**old, "functions": {"makeUser": old["functions"][FN]}}
    verdict = compare(old, renamed)
    assert [(f.rule, f.path) for f in verdict.breaks] == [("FUNCTION_RENAMED", FN)]
    assert "makeUser" in verdict.breaks[0].message


def test_a_function_added_is_a_minor_change() -> None:
    old = iface()
    new = {**old, "functions": {**old["functions"], "deleteUser": old["functions"][FN]}}
    verdict = compare(old, new)
    assert not verdict.breaking and verdict.bump == "minor"
    assert [(f.rule, f.path) for f in verdict.notes] == [("FUNCTION_ADDED", "deleteUser")]


def test_a_new_required_role_breaks_and_a_dropped_one_does_not() -> None:
    verdict = compare(iface(roles=("reader",)), iface(roles=("reader", "admin")))
    assert [(f.rule, f.path) for f in verdict.breaks] == [("FUNCTION_ROLE_ADDED", f"{FN}.roles")]
    assert "'admin'" in verdict.breaks[0].message
    verdict = compare(iface(roles=("reader", "admin")), iface(roles=("reader",)))
    assert not verdict.breaking and [f.rule for f in verdict.notes] == ["FUNCTION_ROLE_REMOVED"]


def test_auth_becoming_required_breaks() -> None:
    old = {**iface(), "auth": "none"}
    assert [f.rule for f in compare(old, iface()).breaks] == ["SERVICE_AUTH_REQUIRED"]
    assert not compare(iface(), old).breaking


def test_bumps() -> None:
    assert compare(iface(), iface()).bump == "none"
    assert compare(iface(timeout=10), iface(timeout=20)).bump == "patch"
    loosened = compare(
        iface(input=obj({"a": {"type": "integer"}})), iface(input=obj({"a": {"type": "number"}}))
    )
    assert loosened.bump == "patch" and not loosened.findings
    assert compare(iface(input=obj({})), iface(input=obj({"a": {"type": S}}, ("a",)))).bump == "major"


def test_the_user_service_interface_against_itself_and_a_tightened_copy() -> None:
    import copy
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[3] / "examples" / "user-service" / "generated" / "interface.json"
    doc = json.loads(path.read_text())
    assert compare(doc, doc).findings == () and compare(doc, doc).bump == "none"
    tighter = copy.deepcopy(doc)
    tighter["functions"]["createUser"]["input"]["properties"]["name"]["maxLength"] = 50
    verdict = compare(doc, tighter)
    assert [f.line() for f in verdict.breaks] == [
        "createUser.input.properties.name.maxLength: BOUND_TIGHTENED: maxLength was 100, now 50"
    ]


def test_a_document_without_functions_is_refused() -> None:
    with pytest.raises(InvalidInterface, match="no 'functions'"):
        compare({"service": "x"}, iface())
    with pytest.raises(InvalidInterface, match="not an object"):
        compare(iface(), {"functions": {"f": 3}})


def test_verdict_json_round_trip_and_summary() -> None:
    verdict = compare(iface(input=obj({})), iface(input=obj({"a": {"type": S}}, ("a",))))
    data = verdict.to_json()
    assert data["verdict"] == "breaking" and data["bump"] == "major"
    assert data["findings"][0]["path"] == f"{FN}.input.properties.a"
    assert verdict.summary().startswith(
        "breaking: createUser.input.properties.a: INPUT_PROPERTY_REQUIRED_ADDED"
    )


@pytest.mark.parametrize(
    ("base", "bump", "taken", "expected"),
    [
        (None, "major", [], "1.0.0"),
        ("1.0.0", "none", [], "1.0.0"),
        ("1.0.0", "patch", [], "1.0.1"),
        ("1.0.0", "minor", [], "1.1.0"),
        ("1.2.3", "major", [], "2.0.0"),
        ("1.0.0", "minor", ["1.0.0", "1.1.0"], "1.2.0"),  # v2 took 1.1.0 from the same live base
        ("1.0.0", "major", ["2.0.0", "3.0.0"], "4.0.0"),
        ("1.1.0", "patch", ["1.1.1", "1.2.0"], "1.1.2"),
    ],
)
def test_next_schema_version(base: str | None, bump: Any, taken: list[str], expected: str) -> None:
    assert next_schema_version(base, bump, taken) == expected


def test_backward_compatible_lists_the_versions_it_still_serves() -> None:
    v1 = iface(input=obj({"a": {"type": S}}))
    v2 = iface(input=obj({"a": {"type": S}, "b": {"type": S}}))
    v3 = iface(input=obj({"a": {"type": S}, "b": {"type": S}}, ("b",)))  # b required: breaks v1 callers
    earlier = [Earlier(1, "1.0.0", v1), Earlier(2, "1.1.0", v2), Earlier(3, "2.0.0", v3)]
    new = iface(input=obj({"a": {"type": S}, "b": {"type": S}}, ("b",)), output=obj({}))
    assert backward_compatible(new, earlier) == ["2.0.0"]
    assert backward_compatible(v2, earlier[:1]) == ["1.0.0"]
    doc = schema_version_document(
        {"functions": {FN: {"inputModel": "CreateUserRequest", "outputModel": "CreateUserResponse"}}},
        "2.1.0",
        ["1.9.0", "2.0.0"],
    )
    assert doc == {
        "schemaVersion": "2.1.0",
        "backwardCompatible": ["2.0.0", "1.9.0"],
        "functions": {FN: {"input": "CreateUserRequest", "output": "CreateUserResponse"}},
    }
