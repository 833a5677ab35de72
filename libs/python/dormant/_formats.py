"""JSON Schema ``format`` in Dormant: an assertion, checked, never a silent annotation.

``CHECKED_FORMATS`` is the closed set of formats a schema may use: ``dormant generate`` refuses any other
(a format nobody checks would let anything through), and every runtime checks each of them with
jsonschema's format checkers, which need the ``jsonschema[format-nongpl]`` extras (rfc3339-validator,
rfc3986-validator, rfc3987-syntax, fqdn, idna, isoduration, jsonpointer, uri-template).
``format_checker`` refuses to hand out a checker that lacks one of them, so a missing extra fails the
runtime at start instead of passing bad input.

Generated models carry every string format as ``str``: the text the caller sent, checked here, never
rewritten by a Python type (``AnyUrl`` adding a slash, a datetime changing its offset) or refused by a
second, different parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # jsonschema is loaded only by the functions that check (a no-op generate never does)
    from jsonschema import FormatChecker

CHECKED_FORMATS: frozenset[str] = frozenset(
    {
        "date", "date-time", "time", "duration",
        "email", "idn-email", "hostname", "idn-hostname", "ipv4", "ipv6",
        "uri", "uri-reference", "iri", "iri-reference", "uri-template",
        "uuid", "json-pointer", "relative-json-pointer", "regex",
    }
)  # fmt: skip


class FormatCheckersMissing(RuntimeError):
    """The installed jsonschema cannot check some of ``CHECKED_FORMATS`` (an extra is not installed)."""


def missing_checkers(checker: FormatChecker | None = None) -> list[str]:
    """Formats of ``CHECKED_FORMATS`` that ``checker`` (by default Draft 2020-12's) cannot check."""
    from jsonschema import Draft202012Validator

    checker = Draft202012Validator.FORMAT_CHECKER if checker is None else checker
    return sorted(CHECKED_FORMATS - set(checker.checkers))


def format_checker() -> FormatChecker:
    """The Draft 2020-12 format checker, once it is known to check every format of ``CHECKED_FORMATS``."""
    from jsonschema import Draft202012Validator

    checker: FormatChecker = Draft202012Validator.FORMAT_CHECKER
    missing = missing_checkers(checker)
    if missing:
        raise FormatCheckersMissing(
            "jsonschema cannot check the formats "
            + ", ".join(missing)
            + ": install jsonschema[format-nongpl]"
        )
    return checker


def formats_used(schema: Any) -> set[str]:
    """Every ``format`` value used anywhere in ``schema`` (property names called "format" excluded)."""
    found: set[str] = set()
    _collect(schema, found)
    return found


def _collect(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "format" and isinstance(value, str):
                found.add(value)
            elif key in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas"):
                if isinstance(value, dict):
                    for sub in value.values():
                        _collect(sub, found)
            elif key not in ("enum", "const", "default", "examples"):
                _collect(value, found)
    elif isinstance(node, list):
        for item in node:
            _collect(item, found)
