"""Checking one schema against the Draft 2020-12 metaschema, with each problem said in plain words.

jsonschema reports a wrong ``type`` as "'strin' is not valid under any of the given schemas", because
the metaschema writes ``type`` as ``anyOf`` (a type name, or a list of them). Here every such
``anyOf``/``oneOf`` error is narrowed to the branch meant for the kind of value that was written (a
string is checked against the branch for strings, not the one for lists), and the remaining error is
phrased by what the keyword wants ("maxLength must be an integer, not the string "x""). The metaschema
reports some errors once per dynamic scope; duplicates are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from .keywords import did_you_mean

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

Path = list[str | int]

TYPE_NAMES = ("array", "boolean", "integer", "null", "number", "object", "string")
_KIND = {
    "object": "an object",
    "array": "a list",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "null": "null",
}
_SCHEMA = "a schema (an object or a boolean)"
_NAME_MAPS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependentRequired"}
)
"""Keywords whose members are names (of properties, definitions), not keywords."""


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    from jsonschema import Draft202012Validator  # lazy: a no-op generate never validates

    return Draft202012Validator(Draft202012Validator.META_SCHEMA)


def metaschema_problems(schema: dict[str, Any]) -> Iterator[tuple[Path, str]]:
    """``(path, message)`` per metaschema violation of ``schema``, sorted by path, without repeats."""
    seen: set[tuple[str, str]] = set()
    errors = sorted(_validator().iter_errors(schema), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        path, message = _phrase(error)
        key = (json.dumps(path), message)
        if key not in seen:
            seen.add(key)
            yield path, message


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _shown(value: Any) -> str:
    """A short description of a written value: ``the string "x"``, ``5``, ``a list``, ``an object``."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    text = json.dumps(value, ensure_ascii=False)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"the string {text}" if isinstance(value, str) else text


def _wrong_kind(error: ValidationError) -> bool:
    """True when an ``anyOf`` branch failed only because the value is of a kind that branch is not for."""
    if list(error.relative_path):
        return False
    if error.validator == "type":
        return True
    wanted: Any = error.validator_value
    if error.validator == "enum" and isinstance(wanted, list):
        return _json_kind(error.instance) not in {_json_kind(v) for v in wanted}
    return False


def _kinds(error: ValidationError) -> list[str]:
    wanted: Any = error.validator_value
    if error.validator == "type":
        return [_KIND.get(t, t) for t in ([wanted] if isinstance(wanted, str) else wanted)]
    if error.validator == "enum":
        return ["one of " + ", ".join(json.dumps(v) for v in wanted)]
    return []


def _specific(error: ValidationError) -> tuple[ValidationError, list[str]]:
    """The most specific error under ``error``; or, when no branch fits the value's kind, the kinds wanted."""
    from jsonschema.exceptions import relevance

    while error.context:
        fitting = [e for e in error.context if not _wrong_kind(e)]
        if not fitting:
            kinds: list[str] = []
            for e in error.context:
                kinds.extend(k for k in _kinds(e) if k not in kinds)
            return error, kinds
        error = min(fitting, key=relevance)
    return error, []


def _label(path: Path) -> str:
    """How the user's keyword at ``path`` is named in a message."""
    if not path:
        return "the schema"
    last = path[-1]
    parent = path[-2] if len(path) > 1 else None
    if isinstance(last, int):
        return f"item {last} of {parent}" if parent is not None else f"item {last}"
    if parent in _NAME_MAPS:
        return f"{parent}[{last!r}]"
    return str(last)


def _is_type_keyword(path: Path) -> bool:
    """True when ``path`` is a ``type`` keyword or an item of one (not a property named "type")."""
    at = len(path) - 1 if path[-1:] == ["type"] else len(path) - 2 if path[-2:-1] == ["type"] else -1
    if at < 0 or (at == len(path) - 2 and not isinstance(path[-1], int)):
        return False
    return at == 0 or path[at - 1] not in _NAME_MAPS


def _phrase(error: ValidationError) -> tuple[Path, str]:
    path: Path = list(error.absolute_path)
    if _is_type_keyword(path):
        return _phrase_type(path, error.instance)
    best, kinds = _specific(error)
    path = list(best.absolute_path)
    label = _label(path)
    value: Any = best.instance
    if kinds:
        return path, f"{label} must be {' or '.join(kinds)}, not {_shown(value)}"
    wanted: Any = best.validator_value
    match best.validator:
        case "type":
            names = [wanted] if isinstance(wanted, str) else list(wanted)
            kind = (
                _SCHEMA
                if set(names) == {"object", "boolean"}
                else " or ".join(_KIND.get(n, n) for n in names)
            )
            return path, f"{label} must be {kind}, not {_shown(value)}"
        case "enum":
            choices = ", ".join(json.dumps(v) for v in wanted)
            strings = [v for v in wanted if isinstance(v, str)]
            hint = did_you_mean(value, strings) if isinstance(value, str) else ""
            return path, f"{label} must be one of {choices}, not {_shown(value)}{hint}"
        case "minItems":
            if wanted == 1:
                return path, f"{label} must not be an empty list"
            return path, f"{label} must hold at least {wanted} items"
        case "uniqueItems":
            for index, item in enumerate(value):
                if item in value[:index]:
                    return [*path, index], f"{label} lists {_shown(item)} more than once"
        case "minimum":
            return path, f"{label} must be {wanted} or more, not {_shown(value)}"
        case "exclusiveMinimum":
            return path, f"{label} must be more than {wanted}, not {_shown(value)}"
    return path, f"{label}: {best.message}"


def _phrase_type(path: Path, value: Any) -> tuple[Path, str]:
    """``type`` must be a type name or a non-empty list of distinct ones."""
    names = ", ".join(TYPE_NAMES)
    if path[-1] != "type":  # an item of a type list
        return path, _type_name_problem(value, names)
    if isinstance(value, str):
        return path, _type_name_problem(value, names)
    if isinstance(value, list):
        if not value:
            return path, f"type must not be an empty list (type names: {names})"
        for index, item in enumerate(value):
            if not isinstance(item, str) or item not in TYPE_NAMES:
                return [*path, index], _type_name_problem(item, names)
        for index, item in enumerate(value):
            if item in value[:index]:
                return [*path, index], f"type lists {item!r} more than once"
    return path, f'type must be a type name such as "string" or a list of them, not {_shown(value)}'


def _type_name_problem(item: Any, names: str) -> str:
    if isinstance(item, str):
        return f"{item!r} is not a JSON Schema type{did_you_mean(item, TYPE_NAMES)}; the types are {names}"
    return f"type names are strings ({names}), not {_shown(item)}"
