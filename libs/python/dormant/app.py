"""The loaded shape of a service: what generated dispatch glue hands to a runtime.

``dormant generate`` writes ``generated/dispatch.py`` into a service; that module builds one
``ServiceSpec`` named ``SERVICE``. Runtimes import it and know, per function, the handler method,
the pydantic models and the JSON schemas, without reading the user's source themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

DEFAULT_TIMEOUT_S = 30.0
MIN_TIMEOUT_S = 1.0
MAX_TIMEOUT_S = 900.0


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One callable function of a service."""

    name: str
    method: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    timeout: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A whole service: its handler class and its functions by wire name."""

    name: str
    handler_class: type[Any]
    interface_hash: str
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
