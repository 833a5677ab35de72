"""Codegen diagnostics: ``path:line:col: error: message`` pointing at the right place, nothing written."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest

from dormant_codegen import CodegenError, Diagnostic, generate, read_service

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "codegen"

SCHEMAS = """\
{
  "Ping": {"type": "object", "properties": {"text": {"type": "string"}}},
  "Pong": {"type": "object", "properties": {"ok": {"type": "boolean"}}},
  "Color": {"type": "string", "enum": ["red", "blue"]}
}
"""

HANDLER = """\
from dormant import Context, function, service
from generated.models import Ping, Pong


@service("pinger")
class Pinger:
    @function("ping")
    async def ping(self, request: Ping, ctx: Context) -> Pong:
        return Pong(ok=True)
"""


def errors_of(service_dir: Path) -> list[str]:
    with pytest.raises(CodegenError) as info:
        generate(service_dir)
    assert not (service_dir / "generated").exists(), "nothing is written on error"
    assert str(info.value) == "\n".join(str(d) for d in info.value.diagnostics)
    return [str(d) for d in info.value.diagnostics]


def make_service(
    root: Path, handler: str = HANDLER, schemas: str = SCHEMAS, extra: dict[str, str] | None = None
) -> Path:
    (root / "schemas").mkdir(parents=True)
    (root / "handlers.py").write_text(textwrap.dedent(handler))
    (root / "schemas" / "ping.json").write_text(schemas)
    for rel, text in (extra or {}).items():
        (root / rel).write_text(text)
    return root


def test_diagnostic_text() -> None:
    assert str(Diagnostic("svc/schemas/a.json", 3, 7, "boom")) == "svc/schemas/a.json:3:7: error: boom"


def test_invalid_json_reports_the_parser_position(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(FIXTURES / "bad_json", tmp_path / "svc")
    monkeypatch.chdir(tmp_path)
    assert errors_of(Path("svc")) == [
        "svc/schemas/ping.json:6:5: error: invalid JSON: Expecting property name enclosed in double quotes"
    ]


def test_invalid_schema_keyword_value_points_at_the_key(tmp_path: Path) -> None:
    service_dir = Path(shutil.copytree(FIXTURES / "bad_schema", tmp_path / "svc"))
    assert errors_of(service_dir) == [
        f'{service_dir}/schemas/ping.json:7:9: error: maxLength must be an integer, not the string "x"'
    ]


def test_schema_problems_in_single_schema_files(tmp_path: Path) -> None:
    service_dir = make_service(
        tmp_path / "svc",
        extra={
            "schemas/Extra.json": '{\n  "type": "object",\n'
            '  "properties": {\n    "n": {"type": "strin"}\n  },\n'
            '  "minProperties": -1\n}\n'
        },
    )
    assert errors_of(service_dir) == [
        f"{service_dir}/schemas/Extra.json:4:11: error: 'strin' is not a JSON Schema type (did you mean "
        "'string'?); the types are array, boolean, integer, null, number, object, string",
        f"{service_dir}/schemas/Extra.json:6:3: error: minProperties must be 0 or more, not -1",
    ]


def test_unknown_refs(tmp_path: Path) -> None:
    schemas = (
        "{\n"
        '  "Ping": {"type": "object", "properties": {"a": {"$ref": "Missing.json"}}},\n'
        '  "Pong": {\n'
        '    "type": "object",\n'
        '    "properties": {"b": {"$ref": "#/$defs/Nope"}, "c": {"$ref": "#/$defs/Ping/properties/zz"}}\n'
        "  }\n"
        "}\n"
    )
    service_dir = make_service(tmp_path / "svc", schemas=schemas)
    assert errors_of(service_dir) == [
        f"{service_dir}/schemas/ping.json:2:51: error: $ref 'Missing.json' resolves to nothing: "
        "no schema named 'Missing' in schemas/*.json",
        f"{service_dir}/schemas/ping.json:5:26: error: $ref '#/$defs/Nope' resolves to nothing: "
        "no schema named 'Nope' in schemas/*.json",
        f"{service_dir}/schemas/ping.json:5:57: error: $ref '#/$defs/Ping/properties/zz' resolves to "
        "nothing: schema 'Ping' has nothing at /properties/zz",
    ]


def test_ref_spellings_all_normalize_to_defs(tmp_path: Path) -> None:
    schemas = """\
    {
      "Ping": {"type": "object", "properties": {
        "a": {"$ref": "Pong.json"}, "b": {"$ref": "Pong"}, "c": {"$ref": "#/$defs/Pong"},
        "d": {"$ref": "#/Pong"}, "e": {"$ref": "Tag.json"}, "f": {"$ref": "#/definitions/Pong"}}},
      "Pong": {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    }
    """
    tag = '{"title": "Tag", "type": "object", "properties": {"self": {"$ref": "#"}}}'
    service_dir = make_service(
        tmp_path / "svc", schemas=textwrap.dedent(schemas), extra={"schemas/tag.json": tag}
    )
    source = read_service(service_dir)
    props = source.schemas["Ping"]["properties"]
    assert {k: v["$ref"] for k, v in props.items()} == {
        "a": "#/$defs/Pong",
        "b": "#/$defs/Pong",
        "c": "#/$defs/Pong",
        "d": "#/$defs/Pong",
        "e": "#/$defs/Tag",
        "f": "#/$defs/Pong",
    }
    assert source.schemas["Tag"]["properties"]["self"] == {"$ref": "#/$defs/Tag"}


BROKEN_HANDLERS = [
    pytest.param(
        HANDLER.replace("request: Ping", "request: Pingg"),
        "handlers.py:8:35: error: @function 'ping': no schema named 'Pingg' in schemas/*.json",
        id="missing-annotation-schema",
    ),
    pytest.param(
        HANDLER.replace('@function("ping")', '@function("ping", output="Pongg")'),
        "handlers.py:7:30: error: @function 'ping': no schema named 'Pongg' in schemas/*.json",
        id="missing-kwarg-schema",
    ),
    pytest.param(
        HANDLER.replace("class Pinger", "class Other:\n    pass\n\n\n@service('second')\nclass Pinger"),
        "handlers.py:10:2: error: a second @service class 'Pinger' ('second'); "
        "'Other' at {dir}/handlers.py:5 is already the service class",
        id="two-services",
    ),
    pytest.param(
        HANDLER.replace('@service("pinger")\n', ""),
        'error: no class decorated with @service("name") in any *.py module of the service',
        id="no-service",
    ),
    pytest.param(
        HANDLER.replace('"pinger"', '"Pinger_Service"'),
        "handlers.py:5:10: error: invalid service name 'Pinger_Service': use lowercase letters, digits "
        "and dashes, at most 64 characters",
        id="bad-service-name",
    ),
    pytest.param(
        HANDLER.replace('"ping"', '"v2"'),
        "handlers.py:7:15: error: invalid function name 'v2': use [A-Za-z][A-Za-z0-9_]*, not v<digits>",
        id="bad-function-name",
    ),
    pytest.param(
        HANDLER.replace("async def", "def"),
        "handlers.py:8:5: error: @function 'ping': method 'ping' must be declared 'async def'",
        id="not-async",
    ),
    pytest.param(
        HANDLER + '\n    @function("ping")\n    async def ping2(self, request: Ping, ctx: Context) -> Pong:\n'
        "        return Pong(ok=False)\n",
        "handlers.py:11:6: error: duplicate function name 'ping' (first at line 7)",
        id="duplicate-function",
    ),
    pytest.param(
        HANDLER.replace('@function("ping")', '@function("ping", timeout=0.5)'),
        "handlers.py:7:31: error: @function 'ping': timeout must be 1 to 900 seconds",
        id="bad-timeout",
    ),
    pytest.param(
        HANDLER.replace("request: Ping", "request"),
        "handlers.py:8:5: error: @function 'ping': annotate the request parameter with a schema model "
        'or pass input="..."',
        id="unannotated",
    ),
    pytest.param(
        HANDLER.replace("class Pinger:", "class Pinger:\n    x = (").replace("return Pong", "return Pong"),
        "handlers.py:7:9: error: invalid Python: '(' was never closed",
        id="syntax-error",
    ),
]


@pytest.mark.parametrize(("handler", "expected"), BROKEN_HANDLERS)
def test_handler_problems(tmp_path: Path, handler: str, expected: str) -> None:
    service_dir = make_service(tmp_path / "svc", handler=handler)
    errors = errors_of(service_dir)
    assert any(e.startswith(f"{service_dir}/") or e.startswith(str(service_dir)) for e in errors)
    wanted = expected.replace("{dir}", str(service_dir))
    assert [e for e in errors if wanted in e], errors


def test_enum_schema_cannot_be_a_function_input(tmp_path: Path) -> None:
    service_dir = make_service(tmp_path / "svc", handler=HANDLER.replace("request: Ping", "request: Color"))
    assert errors_of(service_dir) == [
        f"{service_dir}/handlers.py:8:35: error: @function 'ping': schema 'Color' does not generate a "
        "pydantic model (use an object or other model schema, not an enum)"
    ]


def test_unimportable_module_name(tmp_path: Path) -> None:
    service_dir = make_service(tmp_path / "svc")
    (service_dir / "handlers.py").rename(service_dir / "my-handlers.py")
    errors = errors_of(service_dir)
    assert errors == [
        f"{service_dir}/my-handlers.py:5:2: error: the service class lives in module 'my-handlers', which "
        "cannot be imported: rename the file to a valid Python module name"
    ]


def test_generated_and_tests_dirs_are_not_read(tmp_path: Path) -> None:
    service_dir = make_service(tmp_path / "svc")
    for folder in ("generated", "tests", ".hidden"):
        (service_dir / folder).mkdir()
        (service_dir / folder / "other.py").write_text("@service('other')\nclass Other: ...\n")
    assert read_service(service_dir).name == "pinger"


def test_a_format_the_runtime_cannot_check_is_an_error(tmp_path: Path) -> None:
    schemas = (
        "{\n"
        '  "Ping": {"type": "object", "properties": {\n'
        '    "text": {"type": "string", "format": "int64"},\n'
        '    "when": {"type": "integer", "format": "date-time"},\n'
        '    "list": {"type": "array", "items": {"format": "colour"}},\n'
        '    "format": {"type": "string"},\n'
        '    "ok": {"type": "string", "format": "date-time", "examples": [{"format": "nope"}]}\n'
        "  }},\n"
        '  "Pong": {"type": "object", "properties": {"ok": {"type": "boolean"}}}\n'
        "}\n"
    )
    service_dir = make_service(tmp_path / "svc", schemas=schemas)
    found = errors_of(service_dir)
    where = f"{service_dir}/schemas/ping.json"
    assert [e.split(": error: ")[0] for e in found] == [f"{where}:3:32", f"{where}:4:33", f"{where}:5:41"]
    assert "format 'int64' is not checked by the runtime" in found[0] and "date-time" in found[0]
    assert "format 'date-time' applies to strings only" in found[1]
    assert "format 'colour' is not checked" in found[2]


def test_every_checked_format_is_accepted(tmp_path: Path) -> None:
    from dormant._formats import CHECKED_FORMATS

    props: dict[str, dict[str, Any]] = {
        f"p{i}": {"type": "string", "format": fmt} for i, fmt in enumerate(sorted(CHECKED_FORMATS))
    }
    props["any"] = {"format": "uri"}  # no type: the format applies to strings
    props["either"] = {"type": ["string", "null"], "format": "date"}
    schemas = json.dumps({"Ping": {"type": "object", "properties": props}, "Pong": {"type": "object"}})
    service_dir = make_service(tmp_path / "svc", schemas=schemas)
    generate(service_dir)
    models = (service_dir / "generated" / "models.py").read_text()
    # Formatted strings stay str: the runtime checks them, no Python type rewrites them.
    for banned in ("AnyUrl", "datetime", "UUID", "IPv4Address", "timedelta", "pattern="):
        assert banned not in models


def test_a_missing_or_non_directory_service_path_says_so(tmp_path: Path) -> None:
    with pytest.raises(CodegenError, match="does not exist"):
        read_service(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(CodegenError, match="is not a directory"):
        read_service(tmp_path / "file.txt")
