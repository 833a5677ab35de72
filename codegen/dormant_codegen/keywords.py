"""Mistakes the metaschema lets through: unknown keywords, impossible ``required``, broken regexes.

The Draft 2020-12 metaschema allows any extra keyword, and a validator ignores what it does not know,
so ``"tyep": "string"`` or ``"maxLenght": 10`` would check nothing and nobody would notice. This
module walks a schema as written (only *schema positions*: the members of ``properties``, ``$defs``
and the other maps of subschemas are names, and ``enum``, ``const``, ``default`` and ``examples`` hold
values, so neither is read as keywords) and reports, each with the JSON path of the offending key:

- a key that is not a Draft 2020-12 keyword, not ``definitions`` (normalized to ``$defs``) and not an
  ``x-`` extension, with a "did you mean" suggestion;
- a ``required`` name that is not among ``properties`` (nor matched by ``patternProperties``) while
  ``additionalProperties`` is false: no object could ever pass;
- a ``pattern`` or ``patternProperties`` key that is not a valid regular expression (the runtime uses
  Python's ``re``, as jsonschema does).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from typing import Any

Path = list[str | int]

KEYWORDS = frozenset(
    {
        # core
        "$schema", "$id", "$ref", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary",
        "$comment", "$defs",
        # applicator
        "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems",
        "items", "contains", "properties", "patternProperties", "additionalProperties",
        "propertyNames",
        # unevaluated
        "unevaluatedItems", "unevaluatedProperties",
        # validation
        "type", "enum", "const", "multipleOf", "maximum", "exclusiveMaximum", "minimum",
        "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
        "maxContains", "minContains", "maxProperties", "minProperties", "required", "dependentRequired",
        # format annotation, content, meta-data
        "format", "contentEncoding", "contentMediaType", "contentSchema", "title", "description",
        "default", "deprecated", "readOnly", "writeOnly", "examples",
    }
)  # fmt: skip
"""Every keyword of the JSON Schema Draft 2020-12 vocabularies."""

ACCEPTED = KEYWORDS | {"definitions"}
"""What a schema object may hold besides ``x-`` extensions: ``definitions`` is read like ``$defs``."""

_REPLACED = {
    "dependencies": "Draft 7's 'dependencies' is not a Draft 2020-12 keyword: use 'dependentRequired' "
    "(a list of property names) or 'dependentSchemas' (a schema)",
    "additionalItems": "Draft 7's 'additionalItems' is not a Draft 2020-12 keyword: list the positions "
    "in 'prefixItems' and give the rest in 'items'",
    "$recursiveRef": "'$recursiveRef' is Draft 2019-09: use '$dynamicRef'",
    "$recursiveAnchor": "'$recursiveAnchor' is Draft 2019-09: use '$dynamicAnchor'",
    "id": "Draft 4's 'id' is not a Draft 2020-12 keyword: use '$id'",
    "nullable": "'nullable' is OpenAPI 3.0, not JSON Schema: add \"null\" to the type, "
    'as in "type": ["string", "null"]',
    "example": "'example' is OpenAPI, not JSON Schema: use 'examples' (a list)",
}

_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_ONE = frozenset(
    {
        "not", "if", "then", "else", "additionalProperties", "unevaluatedProperties", "unevaluatedItems",
        "contains", "propertyNames", "contentSchema", "items",
    }
)  # fmt: skip


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` (case-insensitively), or ``""``."""
    pool = sorted(choices)
    folded = {c.lower(): c for c in pool}
    if word.lower() in folded:
        return f" (did you mean {folded[word.lower()]!r}?)"
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(word.lower(), list(folded), n=1, cutoff=0.6)
        close = [folded[c] for c in close]
    return f" (did you mean {close[0]!r}?)" if close else ""


def subschemas(node: Any, path: Path) -> Iterator[tuple[dict[str, Any], Path]]:
    """``node`` and every schema object nested in it (in schema positions), with their paths."""
    if not isinstance(node, dict):
        return
    yield node, path
    for key, value in node.items():
        here: Path = [*path, key]
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            for name, sub in value.items():
                yield from subschemas(sub, [*here, name])
        elif (key in _SCHEMA_LISTS or key == "items") and isinstance(value, list):
            for index, sub in enumerate(value):
                yield from subschemas(sub, [*here, index])
        elif key in _SCHEMA_ONE:
            yield from subschemas(value, here)


def keyword_problems(schema: Any) -> Iterator[tuple[Path, str]]:
    """``(path, message)`` for each problem of the kinds listed in the module docstring."""
    for node, path in subschemas(schema, []):
        for key in node:
            if key in ACCEPTED or key.startswith("x-"):
                continue
            if key in _REPLACED:
                yield [*path, key], _REPLACED[key]
            else:
                yield (
                    [*path, key],
                    f"unknown schema keyword {key!r}{did_you_mean(key, KEYWORDS)}: validators ignore "
                    "unknown keywords, so it would check nothing (name an extension 'x-...')",
                )
        yield from _regex_problems(node, path)
        yield from _impossible_required(node, path)


def _regex_error(text: str) -> str | None:
    try:
        re.compile(text)
    except re.error as exc:
        return f"{exc.msg} at position {exc.pos}" if exc.pos is not None else exc.msg
    return None


def _regex_problems(node: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    pattern = node.get("pattern")
    if isinstance(pattern, str) and (why := _regex_error(pattern)) is not None:
        yield [*path, "pattern"], f"pattern {pattern!r} is not a valid regular expression: {why}"
    patterns = node.get("patternProperties")
    if isinstance(patterns, dict):
        for key in patterns:
            if (why := _regex_error(key)) is not None:
                yield (
                    [*path, "patternProperties", key],
                    f"patternProperties key {key!r} is not a valid regular expression: {why}",
                )


def _impossible_required(node: dict[str, Any], path: Path) -> Iterator[tuple[Path, str]]:
    required = node.get("required")
    if node.get("additionalProperties") is not False or not isinstance(required, list):
        return
    props = node.get("properties")
    names = set(props) if isinstance(props, dict) else set()
    patterns = node.get("patternProperties")
    regexes = [
        re.compile(p) for p in (patterns if isinstance(patterns, dict) else {}) if _regex_error(p) is None
    ]
    for index, name in enumerate(required):
        if not isinstance(name, str) or name in names or any(r.search(name) for r in regexes):
            continue
        yield (
            [*path, "required", index],
            f"{name!r} is required but is not one of the properties{did_you_mean(name, names)}, and "
            "additionalProperties is false, so no object could ever be valid",
        )
