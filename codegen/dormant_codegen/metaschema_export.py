"""The JSON Schema of a ``schemas/*.json`` file as ``dormant generate`` accepts it, for editors.

``dormant generate`` checks a schema file in Python (``schemas``, ``metaschema``, ``keywords``); an
editor can only check a file against a JSON Schema. ``file_metaschema()`` builds that JSON Schema from
the same sources of truth the generator uses, so the two cannot disagree about what is accepted:

- a file is one schema when it is empty or has one of the keys ``schemas`` reads as a schema's
  (``type``, ``properties``, ...), else a map of named schemas, each name matching
  ``SCHEMA_NAME_RE`` and each value a JSON object;
- a schema object holds Draft 2020-12 keywords (``keywords.KEYWORDS``), ``definitions`` and ``x-``
  extensions only; the keywords older drafts and OpenAPI use (``nullable``, ``dependencies``, ...)
  are refused with the generator's own explanation (``errorMessage``, which VS Code shows);
- ``type`` names one of ``metaschema.TYPE_NAMES`` (or lists distinct ones), ``format`` one of the
  formats a runtime checks (``dormant._formats.CHECKED_FORMATS``), and every other keyword takes the
  kind of value Draft 2020-12 gives it; a property may carry the legacy ``"required": true``.

It is written in Draft 7, the dialect every editor's JSON support validates fully (VS Code's JSON
language service warns on 2020-12 features it does not implement). What only the generator can check
(a ``$ref`` that resolves to nothing, a broken regular expression, a ``required`` name no object can
have) stays with ``dormant generate``, whose diagnostics reach the editor's problem list.

``python -m dormant_codegen.metaschema_export [--output FILE]`` prints it (or writes FILE); the output
is deterministic, so a shipped copy (``codegen/vscode/schemas/``) is checked against a fresh export.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dormant._formats import CHECKED_FORMATS

from .keywords import _REPLACED, ACCEPTED
from .metaschema import TYPE_NAMES
from .schemas import _SINGLE_SCHEMA_KEYS, SCHEMA_NAME_RE

DRAFT_7 = "http://json-schema.org/draft-07/schema#"
SCHEMA_ID = "https://dormant.invalid/schemas/dormant-schema-file.json"
"""A name, never fetched: ``.invalid`` is reserved (RFC 2606), so no editor resolves it on the network."""

_SCHEMA: dict[str, Any] = {"$ref": "#/definitions/schema"}
_SCHEMA_MAP: dict[str, Any] = {"type": "object", "additionalProperties": _SCHEMA}
_SCHEMA_LIST: dict[str, Any] = {"type": "array", "minItems": 1, "items": _SCHEMA}
_STRING: dict[str, Any] = {"type": "string"}
_BOOLEAN: dict[str, Any] = {"type": "boolean"}
_NUMBER: dict[str, Any] = {"type": "number"}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}
_ANY: dict[str, Any] = {}
_NAMES: dict[str, Any] = {"type": "array", "items": {"type": "string"}, "uniqueItems": True}


def _keyword_schemas() -> dict[str, dict[str, Any]]:
    """The value schema of every keyword in ``ACCEPTED`` (Draft 2020-12's rules, in Draft 7 terms)."""
    types: dict[str, Any] = {"$ref": "#/definitions/typeName"}
    values: dict[str, dict[str, Any]] = {
        # core
        "$schema": {"type": "string", "format": "uri"},
        "$id": _STRING,
        "$ref": _STRING,
        "$anchor": {"type": "string", "pattern": "^[A-Za-z_][-A-Za-z0-9._]*$"},
        "$dynamicRef": _STRING,
        "$dynamicAnchor": {"type": "string", "pattern": "^[A-Za-z_][-A-Za-z0-9._]*$"},
        "$vocabulary": {"type": "object", "additionalProperties": _BOOLEAN},
        "$comment": _STRING,
        "$defs": _SCHEMA_MAP,
        "definitions": {**_SCHEMA_MAP, "description": "Read like $defs."},
        # applicator
        "allOf": _SCHEMA_LIST,
        "anyOf": _SCHEMA_LIST,
        "oneOf": _SCHEMA_LIST,
        "not": _SCHEMA,
        "if": _SCHEMA,
        "then": _SCHEMA,
        "else": _SCHEMA,
        "dependentSchemas": _SCHEMA_MAP,
        "prefixItems": _SCHEMA_LIST,
        "items": _SCHEMA,
        "contains": _SCHEMA,
        "properties": {"type": "object", "additionalProperties": {"$ref": "#/definitions/property"}},
        "patternProperties": {**_SCHEMA_MAP, "propertyNames": {"format": "regex"}},
        "additionalProperties": _SCHEMA,
        "propertyNames": _SCHEMA,
        # unevaluated
        "unevaluatedItems": _SCHEMA,
        "unevaluatedProperties": _SCHEMA,
        # validation
        "type": {
            "anyOf": [types, {"type": "array", "items": types, "minItems": 1, "uniqueItems": True}],
        },
        "enum": {"type": "array"},
        "const": _ANY,
        "multipleOf": {"type": "number", "exclusiveMinimum": 0},
        "maximum": _NUMBER,
        "exclusiveMaximum": _NUMBER,
        "minimum": _NUMBER,
        "exclusiveMinimum": _NUMBER,
        "maxLength": _COUNT,
        "minLength": _COUNT,
        "pattern": {"type": "string", "format": "regex"},
        "maxItems": _COUNT,
        "minItems": _COUNT,
        "uniqueItems": _BOOLEAN,
        "maxContains": _COUNT,
        "minContains": _COUNT,
        "maxProperties": _COUNT,
        "minProperties": _COUNT,
        "required": _NAMES,
        "dependentRequired": {"type": "object", "additionalProperties": _NAMES},
        # format annotation, content, meta-data
        "format": {
            "type": "string",
            "enum": sorted(CHECKED_FORMATS),
            "errorMessage": "the runtime checks only these formats: "
            + ", ".join(sorted(CHECKED_FORMATS))
            + "; use a pattern or another format",
        },
        "contentEncoding": _STRING,
        "contentMediaType": _STRING,
        "contentSchema": _SCHEMA,
        "title": _STRING,
        "description": _STRING,
        "default": _ANY,
        "deprecated": _BOOLEAN,
        "readOnly": _BOOLEAN,
        "writeOnly": _BOOLEAN,
        "examples": {"type": "array"},
    }
    missing = sorted(ACCEPTED - set(values))
    extra = sorted(set(values) - ACCEPTED)
    if missing or extra:  # a keyword added to (or dropped from) the generator must be described here
        raise RuntimeError(f"metaschema export out of step with keywords.ACCEPTED: {missing=} {extra=}")
    return {key: values[key] for key in sorted(values)}


def file_metaschema() -> dict[str, Any]:
    """The Draft 7 JSON Schema of one ``schemas/*.json`` file (see the module docstring)."""
    keywords = _keyword_schemas()
    replaced = {key: {"not": {}, "errorMessage": _REPLACED[key]} for key in sorted(_REPLACED)}
    schema_object: dict[str, Any] = {
        "type": "object",
        "properties": {**keywords, **replaced},
        "patternProperties": {"^x-": {"description": "An extension: validators ignore it."}},
        "additionalProperties": False,
    }
    legacy_required = {
        "type": "boolean",
        "description": "Legacy (Draft 3): true adds this property to the parent's required list.",
    }
    single_keys = sorted(_SINGLE_SCHEMA_KEYS)
    return {
        "$schema": DRAFT_7,
        "$id": SCHEMA_ID,
        "title": "A Dormant schemas/*.json file",
        "description": "One schema, or a map of named schemas (names: [A-Za-z_][A-Za-z0-9_-]*), in "
        "JSON Schema Draft 2020-12 as `dormant generate` accepts it. Exported by "
        "`python -m dormant_codegen.metaschema_export`; do not edit.",
        "type": "object",
        "if": {"anyOf": [{"required": [key]} for key in single_keys]},
        "then": {"$ref": "#/definitions/schemaObject"},
        "else": {
            "propertyNames": {
                "pattern": SCHEMA_NAME_RE.pattern,
                "patternErrorMessage": "a schema name is [A-Za-z_][A-Za-z0-9_-]*",
            },
            "additionalProperties": {"$ref": "#/definitions/schemaObject"},
        },
        "definitions": {
            "schema": {"anyOf": [_BOOLEAN, {"$ref": "#/definitions/schemaObject"}]},
            "schemaObject": schema_object,
            "property": {
                "anyOf": [
                    _BOOLEAN,
                    {
                        **schema_object,
                        "properties": {
                            **schema_object["properties"],
                            "required": {"anyOf": [_NAMES, legacy_required]},
                        },
                    },
                ]
            },
            "typeName": {
                "type": "string",
                "enum": list(TYPE_NAMES),
                "errorMessage": "the JSON Schema types are " + ", ".join(TYPE_NAMES),
            },
        },
    }


def render() -> str:
    """``file_metaschema()`` as the exact text shipped (two-space indent, trailing newline)."""
    return json.dumps(file_metaschema(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dormant_codegen.metaschema_export",
        description="Print the JSON Schema of a schemas/*.json file as `dormant generate` accepts it.",
    )
    parser.add_argument("--output", type=Path, help="write it to this file instead of stdout")
    args = parser.parse_args(argv)
    text = render()
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
