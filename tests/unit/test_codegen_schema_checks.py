"""Schema mistakes caught at generate, each at its exact ``file:line:col``, in plain words.

Unknown keywords (with a suggestion), ``required`` names no object could have, broken regexes,
``$ref`` spellings that resolve to nothing, and metaschema errors narrowed from "is not valid under
any of the given schemas" to the specific cause.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dormant_codegen import CodegenError, generate
from dormant_codegen.keywords import did_you_mean, keyword_problems
from dormant_codegen.metaschema import metaschema_problems

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "codegen"

HANDLER = """\
from dormant import Context, function, service
from generated.models import Ping, Pong


@service("pinger")
class Pinger:
    @function("ping")
    async def ping(self, request: Ping, ctx: Context) -> Pong:
        return Pong(ok=True)
"""

SCHEMA = "a schema (an object or a boolean)"
PONG = '  "Pong": {"type": "object", "properties": {"ok": {"type": "boolean"}}}\n'


def errors_of(service_dir: Path) -> list[str]:
    with pytest.raises(CodegenError) as info:
        generate(service_dir)
    assert not (service_dir / "generated").exists(), "nothing is written on error"
    return [str(d) for d in info.value.diagnostics]


def service_with(tmp_path: Path, schemas: str) -> tuple[Path, str]:
    """A service whose ``schemas/ping.json`` is ``schemas``; (its dir, the displayed schema path)."""
    root = tmp_path / "svc"
    (root / "schemas").mkdir(parents=True)
    (root / "handlers.py").write_text(HANDLER)
    (root / "schemas" / "ping.json").write_text(schemas)
    return root, f"{root}/schemas/ping.json"


# ---- unknown keywords ---------------------------------------------------------------------------


def test_unknown_keywords_fixture_points_at_each_key(tmp_path: Path) -> None:
    service_dir = Path(shutil.copytree(FIXTURES / "unknown_keywords", tmp_path / "svc"))
    where = f"{service_dir}/schemas/ping.json"
    tail = ": validators ignore unknown keywords, so it would check nothing (name an extension 'x-...')"
    assert errors_of(service_dir) == [
        f"{where}:5:16: error: unknown schema keyword 'tyep' (did you mean 'type'?){tail}",
        f"{where}:5:34: error: unknown schema keyword 'maxLenght' (did you mean 'maxLength'?){tail}",
        f"{where}:6:34: error: unknown schema keyword 'MinLength' (did you mean 'minLength'?){tail}",
        f"{where}:7:44: error: 'nullable' is OpenAPI 3.0, not JSON Schema: add \"null\" to the type, "
        'as in "type": ["string", "null"]',
        f"{where}:8:34: error: unknown schema keyword 'minimun' (did you mean 'minimum'?){tail}",
        f"{where}:10:5: error: unknown schema keyword 'additionalProperty' "
        f"(did you mean 'additionalProperties'?){tail}",
        f"{where}:11:5: error: unknown schema keyword 'frobnicate'{tail}",
    ]


def test_names_values_and_extensions_are_not_keywords(tmp_path: Path) -> None:
    schemas = (
        """\
{
  "Ping": {
    "title": "Ping", "description": "d", "$comment": "c", "deprecated": false,
    "x-internal": {"tyep": 1}, "definitions": {"tyep": {"type": "string"}},
    "type": "object",
    "properties": {
      "tyep": {"type": "string", "readOnly": true, "writeOnly": false, "required": true},
      "meta": {"default": {"tyep": 1}, "examples": [{"tyep": 2}], "const": {"tyep": 3}},
      "choice": {"enum": [{"tyep": 4}]},
      "dep": {"type": "object", "dependentSchemas": {"tyep": {"required": ["a"]}},
              "dependentRequired": {"tyep": ["a"]}, "patternProperties": {"^tyep$": {}}}
    },
    "$defs": {"tyep": {"type": "integer"}}
  },
"""
        + PONG
        + "}\n"
    )
    service_dir, _ = service_with(tmp_path, schemas)
    generate(service_dir)


def test_keywords_nested_in_every_schema_position_are_checked() -> None:
    inner = {"tyep": "string"}
    schema = {
        "allOf": [inner], "anyOf": [inner], "oneOf": [inner], "prefixItems": [inner], "not": inner,
        "if": inner, "then": inner, "else": inner, "items": inner, "contains": inner,
        "additionalProperties": inner, "unevaluatedProperties": inner, "unevaluatedItems": inner,
        "propertyNames": inner, "contentSchema": inner, "properties": {"a": inner},
        "patternProperties": {"^a": inner}, "$defs": {"A": inner}, "definitions": {"B": inner},
        "dependentSchemas": {"c": inner},
    }  # fmt: skip
    paths = sorted("/".join(str(p) for p in path) for path, _ in keyword_problems(schema))
    assert paths == sorted(
        [
            "allOf/0/tyep", "anyOf/0/tyep", "oneOf/0/tyep", "prefixItems/0/tyep", "not/tyep", "if/tyep",
            "then/tyep", "else/tyep", "items/tyep", "contains/tyep", "additionalProperties/tyep",
            "unevaluatedProperties/tyep", "unevaluatedItems/tyep", "propertyNames/tyep",
            "contentSchema/tyep", "properties/a/tyep", "patternProperties/^a/tyep", "$defs/A/tyep",
            "definitions/B/tyep", "dependentSchemas/c/tyep",
        ]
    )  # fmt: skip


@pytest.mark.parametrize(
    ("keyword", "advice"),
    [
        ("dependencies", "use 'dependentRequired'"),
        ("additionalItems", "give the rest in 'items'"),
        ("$recursiveRef", "use '$dynamicRef'"),
        ("id", "use '$id'"),
        ("example", "use 'examples'"),
    ],
)
def test_keywords_of_other_drafts_say_what_replaces_them(keyword: str, advice: str) -> None:
    [(path, message)] = keyword_problems({"type": "object", keyword: {}})
    assert path == [keyword] and advice in message


def test_did_you_mean() -> None:
    assert did_you_mean("tyep", ["type", "title"]) == " (did you mean 'type'?)"
    assert did_you_mean("FORMAT", ["format"]) == " (did you mean 'format'?)"
    assert did_you_mean("zzzz", ["type"]) == ""


# ---- required names no object could have ----------------------------------------------------------


def test_required_name_that_is_not_a_property_with_additional_properties_false(tmp_path: Path) -> None:
    schemas = (
        "{\n"
        '  "Ping": {"type": "object", "additionalProperties": false,\n'
        '    "properties": {"email": {"type": "string"}, "name": {"type": "string", "required": true}},\n'
        '    "patternProperties": {"^x_": {}},\n'
        '    "required": ["email", "emial", "x_extra", "name"]},\n'
        '  "Open": {"type": "object", "properties": {"a": {}}, "required": ["b"]},\n' + PONG + "}\n"
    )
    service_dir, where = service_with(tmp_path, schemas)
    assert errors_of(service_dir) == [
        f"{where}:5:27: error: 'emial' is required but is not one of the properties (did you mean "
        "'email'?), and additionalProperties is false, so no object could ever be valid",
    ]


# ---- regular expressions ------------------------------------------------------------------------


def test_broken_regexes(tmp_path: Path) -> None:
    schemas = (
        "{\n"
        '  "Ping": {"type": "object",\n'
        '    "properties": {"code": {"type": "string", "pattern": "^[A-Z+$"}},\n'
        '    "patternProperties": {"(x": {"type": "string"}}},\n' + PONG + "}\n"
    )
    service_dir, where = service_with(tmp_path, schemas)
    assert errors_of(service_dir) == [
        f"{where}:3:47: error: pattern '^[A-Z+$' is not a valid regular expression: "
        "unterminated character set at position 1",
        f"{where}:4:27: error: patternProperties key '(x' is not a valid regular expression: "
        "missing ), unterminated subpattern at position 0",
    ]


# ---- $ref ---------------------------------------------------------------------------------------


def test_refs_that_resolve_to_nothing(tmp_path: Path) -> None:
    schemas = (
        "{\n"
        '  "Ping": {"type": "object", "properties": {\n'
        '    "a": {"$ref": "Pongg.json"},\n'
        '    "b": {"$ref": "https://example.com/x.json"},\n'
        '    "c": {"$ref": "#anchor"},\n'
        '    "d": {"$ref": "#/definitions/Png"}}},\n' + PONG + "}\n"
    )
    service_dir, where = service_with(tmp_path, schemas)
    head = "error: $ref"
    assert errors_of(service_dir) == [
        f"{where}:3:11: {head} 'Pongg.json' resolves to nothing: no schema named 'Pongg' in "
        "schemas/*.json (did you mean 'Pong'?)",
        f"{where}:4:11: {head} 'https://example.com/x.json' resolves to nothing: URLs are not "
        "fetched; copy the schema into schemas/ and refer to it by name",
        f"{where}:5:11: {head} '#anchor' resolves to nothing: anchors are not supported; use a "
        "schema name ('Name.json') or a JSON pointer",
        f"{where}:6:11: {head} '#/definitions/Png' resolves to nothing: no schema named 'Png' in "
        "schemas/*.json (did you mean 'Pong'?)",
    ]


# ---- metaschema errors in plain words -------------------------------------------------------------


def test_metaschema_errors_name_the_specific_cause(tmp_path: Path) -> None:
    schemas = (
        "{\n"
        '  "Ping": {"type": "object", "properties": {\n'
        '    "a": {"type": ["string", "nul"]},\n'
        '    "b": {"type": []},\n'
        '    "c": {"type": 5},\n'
        '    "d": {"type": ["string", "string"]},\n'
        '    "e": {"items": 5},\n'
        '    "f": {"enum": "x"},\n'
        '    "g": {"allOf": []},\n'
        '    "h": {"type": "object", "required": ["a", "a"]},\n'
        '    "i": {"multipleOf": 0},\n'
        '    "type": {"type": "string", "minLength": true}\n'
        "  }},\n" + PONG + "}\n"
    )
    service_dir, where = service_with(tmp_path, schemas)
    types = "array, boolean, integer, null, number, object, string"
    assert errors_of(service_dir) == [
        f"{where}:3:30: error: 'nul' is not a JSON Schema type (did you mean 'null'?); the types are "
        + types,
        f"{where}:4:11: error: type must not be an empty list (type names: {types})",
        f'{where}:5:11: error: type must be a type name such as "string" or a list of them, not 5',
        f"{where}:6:30: error: type lists 'string' more than once",
        f"{where}:7:11: error: items must be {SCHEMA}, not 5",
        f'{where}:8:11: error: enum must be a list, not the string "x"',
        f"{where}:9:11: error: allOf must not be an empty list",
        f'{where}:10:47: error: required lists the string "a" more than once',
        f"{where}:11:11: error: multipleOf must be more than 0, not 0",
        f"{where}:12:32: error: minLength must be an integer, not true",
    ]


def test_metaschema_problems_are_not_repeated() -> None:
    # The metaschema reports some errors once per dynamic scope (eight times for this one).
    assert list(metaschema_problems({"additionalProperties": "no"})) == [
        (["additionalProperties"], 'additionalProperties must be ' + SCHEMA + ', not the string "no"'),
    ]  # fmt: skip


def test_a_property_named_type_is_not_the_type_keyword() -> None:
    problems = list(metaschema_problems({"properties": {"type": 5}}))
    assert problems == [(["properties", "type"], "properties['type'] must be " + SCHEMA + ", not 5")]
