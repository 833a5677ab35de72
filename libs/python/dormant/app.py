"""The loaded shape of a service: what generated dispatch glue hands to a runtime.

``dormant generate`` writes ``generated/dispatch.py`` into a service; that module builds one
``ServiceSpec`` named ``SERVICE``. Runtimes import it and know, per function, the handler method,
the pydantic models and the JSON schemas, without reading the user's source themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pydantic import BaseModel

DEFAULT_TIMEOUT_S = 30.0
MIN_TIMEOUT_S = 1.0
MAX_TIMEOUT_S = 900.0

AuthMode = Literal["required", "optional", "off"]
AUTH_MODES: tuple[AuthMode, ...] = ("required", "optional", "off")
"""How a service treats callers' bearer tokens (``@service(name, auth=...)``); ``required`` by default."""


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
    roles: tuple[str, ...] = ()
    """The caller needs at least one of these roles; none listed: any caller the service admits."""


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A whole service: its handler class and its functions by wire name."""

    name: str
    handler_class: type[Any]
    interface_hash: str
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    auth: AuthMode = "required"
