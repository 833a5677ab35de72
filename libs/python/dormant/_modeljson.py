"""``model_json``: the JSON form of a generated model, exactly what its author set.

Generated models give every optional property a ``None`` default, so ``None`` means two things: "left
out" (the default) and "set to null" (explicitly). ``model_json`` keeps the second and drops the first,
so an explicit ``null`` round-trips and an untouched optional property stays absent. Callers (the
SDK client and the TestClient) send inputs with it through ``request_body``; the runtime turns outputs
into JSON with it (and then drops nulls the schema refuses).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic


def model_json(model: pydantic.BaseModel) -> Any:
    """``model`` dumped by alias in JSON mode, without the ``None`` defaults nobody set."""
    full = model.model_dump(mode="json", by_alias=True)
    explicit = model.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return _without_unset_nulls(full, explicit)


def request_body(params: Any) -> Any:
    """What a caller sends for ``params``: a model by its JSON names (``model_json``), a mapping as a
    dict, nothing as ``{}``; any other value as it is (the service answers it with ``ValidationError``).
    ``dormant.Client`` and ``dormant.testing.TestClient`` both send through this."""
    if isinstance(params, pydantic.BaseModel):
        return model_json(params)
    if isinstance(params, Mapping):
        return dict(params)
    return {} if params is None else params


def _without_unset_nulls(full: Any, explicit: Any) -> Any:
    if isinstance(full, dict) and isinstance(explicit, dict):
        return {
            key: _without_unset_nulls(value, explicit[key]) if key in explicit else value
            for key, value in full.items()
            if key in explicit or value is not None
        }
    if isinstance(full, list) and isinstance(explicit, list) and len(full) == len(explicit):
        return [_without_unset_nulls(a, b) for a, b in zip(full, explicit, strict=True)]
    return full
