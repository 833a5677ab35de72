"""The position-tracking JSON scanner behind schema diagnostics."""

from __future__ import annotations

import json

import pytest

from dormant_codegen.jsonpos import JsonPositions, pointer

TEXT = '{\n  "a": [1, {"b/c": true}],\n  "é~": "x\\"y",\n\t"n": null\n}\n'


def test_pointers_map_to_key_or_value_positions() -> None:
    json.loads(TEXT)
    pos = JsonPositions(TEXT)
    assert pos.locate("") == (1, 1)
    assert pos.locate("/a") == (2, 3)
    assert pos.locate("/a/0") == (2, 9)
    assert pos.locate("/a/1") == (2, 12)
    assert pos.locate("/a/1/b~1c") == (2, 13)
    assert pos.locate("/é~0") == (3, 3)
    assert pos.locate("/n") == (4, 2)


def test_missing_pointers_fall_back_to_the_nearest_ancestor() -> None:
    pos = JsonPositions(TEXT)
    assert pos.locate("/a/1/required") == pos.locate("/a/1")
    assert pos.locate("/zzz/deeper") == (1, 1)


def test_pointer_escapes_tokens() -> None:
    assert pointer(["properties", "a/b", "x~y", 3]) == "/properties/a~1b/x~0y/3"


def test_trailing_garbage_is_rejected() -> None:
    with pytest.raises(ValueError):
        JsonPositions('{"a": 1} x')
