"""``generated/client.py``: the typed Python client of a service, rendered from ``templates/python``.

One class (``UserServiceClient`` for ``user-service``) wraps a connected ``dormant.Client``; each
function becomes an async method named like the handler's method (interface.json ``method``), taking
the generated input model and returning the generated output model, so mypy rejects a call with the
wrong model. The per-call options are a ``TypedDict`` unpacked into keyword arguments (PEP 692).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .constants import PY_HEADER
from .render import _environment
from .typescript import client_class_name


@dataclass(frozen=True, slots=True)
class PyClientFunction:
    """What the client template needs of one function."""

    name: str
    method: str
    input_model: str
    output_model: str
    timeout: float
    roles: tuple[str, ...] = ()


def _var_name(class_name: str) -> str:
    base = class_name.removesuffix("Client") or class_name
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in base).lstrip("_")
    return snake or "service"


def render_python_client(service: str, interface_hash: str, functions: Sequence[PyClientFunction]) -> str:
    """The text of ``client.py`` for ``functions`` (sorted by function name)."""
    ordered = sorted(functions, key=lambda f: f.name)
    class_name = client_class_name(service)
    rows = [
        {
            "name": fn.name,
            "method": fn.method,
            "input_model": fn.input_model,
            "output_model": fn.output_model,
            "timeout": f"{fn.timeout:g}",
            "roles": list(fn.roles),
        }
        for fn in ordered
    ]
    imports = sorted({fn.input_model for fn in ordered} | {fn.output_model for fn in ordered})
    return (
        _environment("python")
        .get_template("client.py.j2")
        .render(
            header=PY_HEADER,
            service=service,
            interface_hash=interface_hash,
            class_name=class_name,
            var_name=_var_name(class_name),
            example=rows[0] if rows else None,
            imports=imports,
            functions=rows,
        )
    )
