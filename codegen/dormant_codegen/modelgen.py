"""Pydantic v2 models from the schema bundle, through datamodel-code-generator's Python API.

Options are pinned here so the output depends only on the bundle (no timestamp, built-in formatter,
Python 3.11 target). ``format`` is left out of what the model generator sees, so every formatted
string is a plain ``str``: the runtime checks the format itself (``dormant._formats``), and a Python type
would rewrite the text (``AnyUrl`` adds a slash, a datetime changes its offset) or refuse values the
format allows (months in a ``timedelta``, a hostname's trailing dot), so the output would not
round-trip the input. Models set ``populate_by_name``, so a handler can build a model
whose JSON names are not Python names (``class``, ``from``, ``user-id``) by its field names
(``class_``, ``from_``, ``user_id``). datamodel-code-generator is imported lazily: a no-op ``generate``
never loads it.
"""

from __future__ import annotations

import ast
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .constants import PY_HEADER
from .diagnostics import CodegenError, Diagnostic
from .pysource import parse_module

_MODEL_BASES = ("BaseModel", "RootModel")


@dataclass(frozen=True, slots=True)
class GeneratedModels:
    """The text of ``models.py`` and, per top-level schema name, its class and whether it is a model."""

    source: str
    classes: dict[str, str]
    pydantic_classes: frozenset[str]


def generate_models(bundle: dict[str, Any], where: str) -> GeneratedModels:
    """Run datamodel-code-generator over ``bundle`` (``{"$defs": {...}}``); ``where`` names it in errors."""
    from datamodel_code_generator import generate
    from datamodel_code_generator.enums import DataModelType, InputFileType
    from datamodel_code_generator.format import Formatter, PythonVersion

    with tempfile.TemporaryDirectory(prefix="dormant-models-") as tmp:
        metadata_path = Path(tmp) / "metadata.json"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                source = generate(
                    json.dumps(_without_formats(bundle), ensure_ascii=False),
                    input_file_type=InputFileType.JsonSchema,
                    input_filename="schemas.bundle.json",
                    output_model_type=DataModelType.PydanticV2BaseModel,
                    target_python_version=PythonVersion.PY_311,
                    disable_timestamp=True,
                    formatters=[Formatter.BUILTIN],
                    custom_file_header=PY_HEADER,
                    field_constraints=True,
                    use_double_quotes=True,
                    use_standard_collections=True,
                    use_union_operator=True,
                    use_schema_description=True,
                    skip_root_model=True,
                    allow_population_by_field_name=True,
                    emit_model_metadata=metadata_path,
                )
            metadata = json.loads(metadata_path.read_text())
        except Exception as exc:  # the generator raises many unrelated types; all mean the same here
            raise CodegenError([Diagnostic(where, 1, 1, f"model generation failed: {exc}")]) from exc
    if not isinstance(source, str):
        raise CodegenError([Diagnostic(where, 1, 1, "model generation produced more than one module")])
    source = source.rstrip("\n") + "\n"
    classes: dict[str, str] = {}
    for model in metadata.get("models", []):
        path = model.get("source_path")
        if isinstance(path, list) and len(path) == 2 and path[0] == "$defs":
            classes[str(path[1])] = str(model["class_name"])
    return GeneratedModels(source, classes, _pydantic_classes(source))


_VALUE_KEYWORDS = frozenset({"enum", "const", "default", "examples"})


def _without_formats(node: Any) -> Any:
    """``node`` without its ``format`` keywords (values under enum/const/default/examples untouched)."""
    if isinstance(node, dict):
        return {
            key: value if key in _VALUE_KEYWORDS else _without_formats(value)
            for key, value in node.items()
            if not (key == "format" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [_without_formats(item) for item in node]
    return node


def _pydantic_classes(source: str) -> frozenset[str]:
    """Names of the classes in ``source`` that derive from ``BaseModel``/``RootModel`` (directly or not)."""
    bases: dict[str, list[str]] = {}
    for node in parse_module(source).body:
        if isinstance(node, ast.ClassDef):
            bases[node.name] = [
                ast.unparse(b.value if isinstance(b, ast.Subscript) else b) for b in node.bases
            ]
    found: set[str] = set()

    def is_model(name: str, seen: frozenset[str]) -> bool:
        if name in _MODEL_BASES:
            return True
        if name in seen or name not in bases:
            return False
        return any(is_model(b, seen | {name}) for b in bases[name])

    for name in bases:
        if is_model(name, frozenset()):
            found.add(name)
    return frozenset(found)
