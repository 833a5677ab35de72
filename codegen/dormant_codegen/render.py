"""Rendering the Python glue (``dispatch.py``, ``__init__.py``) from the jinja2 templates per language."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .constants import PY_HEADER

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).parent / "templates"


@dataclass(frozen=True, slots=True)
class DispatchFunction:
    """What the dispatch template needs of one function."""

    name: str
    method: str
    input_model: str
    output_model: str
    timeout: float
    roles: tuple[str, ...] = ()


def _pystr(value: str) -> str:
    """A Python string literal (JSON string syntax is valid Python for any str)."""
    return json.dumps(value, ensure_ascii=False)


@lru_cache(maxsize=4)
def _environment(language: str) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES / language),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pystr"] = _pystr
    return env


def render_dispatch(
    service: str,
    handler_module: str,
    handler_class: str,
    interface_hash: str,
    functions: list[DispatchFunction],
    *,
    auth: str = "required",
) -> str:
    return (
        _environment("python")
        .get_template("dispatch.py.j2")
        .render(
            header=PY_HEADER,
            service=service,
            handler_module=handler_module,
            handler_class=handler_class,
            interface_hash=interface_hash,
            auth=auth,
            functions=sorted(functions, key=lambda f: f.name),
        )
    )


def render_package_init(service: str) -> str:
    return _environment("python").get_template("__init__.py.j2").render(header=PY_HEADER, service=service)
