"""``model_json``: explicit nulls round-trip; untouched optional properties stay absent."""

from __future__ import annotations

import pydantic

from dormant._modeljson import model_json, request_body


class Inner(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(populate_by_name=True)
    user_id: str | None = pydantic.Field(None, alias="user-id")
    note: str | None = None


class Outer(pydantic.BaseModel):
    name: str
    nick: str | None = None
    inner: Inner | None = None
    items: list[Inner] = []


def test_explicit_null_is_kept_and_unset_default_is_dropped() -> None:
    assert model_json(Outer(name="a", nick=None)) == {"name": "a", "nick": None, "items": []}
    assert model_json(Outer(name="a")) == {"name": "a", "items": []}


def test_nested_models_and_lists_follow_the_same_rule() -> None:
    value = Outer(name="a", inner=Inner(user_id=None), items=[Inner(note="x"), Inner(note=None)])
    assert model_json(value) == {
        "name": "a",
        "inner": {"user-id": None},
        "items": [{"note": "x"}, {"note": None}],
    }


def test_the_client_sends_what_the_caller_set() -> None:
    assert request_body(Outer(name="a", nick=None)) == {"name": "a", "nick": None, "items": []}
    assert request_body(None) == {}
    assert request_body({"k": None}) == {"k": None}
