"""The VS Code extension (codegen/vscode): compiled with tsc, its pure modules tested with Node's test
runner, packaged into a .vsix with @vscode/vsce; its problem matcher's regular expression applied (in
Node, as VS Code applies it) to real ``dormant generate`` error output; the meta-schema it ships equal
to a fresh export and in agreement with the generator; the TestClient debug script it ships.

The VS Code integration harness (@vscode/test-electron) downloads VS Code, which cannot run here, so
what needs the editor itself is not tested (docs/vscode.md says so).

Needs node and the extension's node_modules (``npm ci --prefix codegen/vscode``, run by
deploy/bootstrap.sh); the module fixture runs ``npm ci`` itself when they are missing.
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator

from dormant_codegen import CodegenError, Diagnostic, generate
from dormant_codegen.metaschema_export import render
from dormant_codegen.schemas import load_schemas

ROOT = Path(__file__).resolve().parents[2]
EXT = ROOT / "codegen" / "vscode"
SHIPPED_METASCHEMA = EXT / "schemas" / "dormant-schema-file.json"
DEBUG_SCRIPT = EXT / "python" / "dormant_debug_call.py"
DORMANT = ROOT / ".venv" / "bin" / "dormant"
GREETER = ROOT / "examples" / "greeter"
SOURCE_ROOTS = ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")
NPM_TIMEOUT_S = 600.0
BUILD_TIMEOUT_S = 300.0

# Applies package.json's problem matcher pattern to each line of stdin, as VS Code does (new RegExp,
# no flags, one line at a time), and prints what each capture group got (null: no match).
MATCHER_JS = r"""
const fs = require("fs");
const manifest = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
const [matcher] = manifest.contributes.problemMatchers;
const p = matcher.pattern;
const re = new RegExp(p.regexp);
const lines = fs.readFileSync(0, "utf8").split("\n").filter((l) => l !== "");
const out = lines.map((line) => {
  const m = re.exec(line);
  return m === null ? null : {
    file: m[p.file], line: Number(m[p.line]), column: Number(m[p.column]),
    severity: m[p.severity], message: m[p.message],
  };
});
process.stdout.write(JSON.stringify({ fileLocation: matcher.fileLocation, matches: out }));
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(ROOT / p) for p in SOURCE_ROOTS)
    return env


def _run(
    args: list[str | Path], cwd: Path, timeout: float, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout, **kwargs
    )


@pytest.fixture(scope="module")
def vsix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged extension: ``npm ci`` when node_modules is missing, then ``vsce package`` (whose
    ``vscode:prepublish`` script compiles src/ with tsc into out/)."""
    if not (EXT / "node_modules" / ".bin" / "vsce").exists():
        installed = _run(["npm", "ci", "--no-audit", "--no-fund"], EXT, NPM_TIMEOUT_S)
        assert installed.returncode == 0, installed.stdout + installed.stderr
    out = tmp_path_factory.mktemp("vsix") / "dormant.vsix"
    vsce = EXT / "node_modules" / ".bin" / "vsce"
    packaged = _run(
        [vsce, "package", "--allow-missing-repository", "--no-dependencies", "--out", out],
        EXT,
        BUILD_TIMEOUT_S,
    )
    assert packaged.returncode == 0, packaged.stdout + packaged.stderr
    assert "WARNING" not in packaged.stdout + packaged.stderr, packaged.stdout + packaged.stderr
    return out


def test_vsix_holds_the_manifest_the_compiled_extension_and_its_files(vsix: Path) -> None:
    with zipfile.ZipFile(vsix) as archive:
        names = set(archive.namelist())
        manifest = json.loads(archive.read("extension/package.json"))
        shipped_schema = archive.read("extension/schemas/dormant-schema-file.json").decode()
        compiled = archive.read("extension/out/extension.js").decode()
    assert manifest["main"] == "./out/extension.js"
    assert "function activate(" in compiled
    for module in ("diagnostics", "meshState", "services", "tasks", "launch", "commands"):
        assert f"extension/out/{module}.js" in names
    assert "extension/python/dormant_debug_call.py" in names
    assert "extension/LICENSE.txt" in names
    assert shipped_schema == render()
    # Only what the extension runs: no sources, tests, node_modules or source maps.
    assert not any(
        n.startswith(("extension/src/", "extension/node_modules/", "extension/out/test/")) for n in names
    )
    assert not any(n.endswith(".map") for n in names)
    contributes = manifest["contributes"]
    assert [m["name"] for m in contributes["problemMatchers"]] == ["dormant"]
    assert contributes["jsonValidation"][0]["url"] == "./schemas/dormant-schema-file.json"
    assert contributes["taskDefinitions"][0]["type"] == "dormant"


def test_node_unit_tests_pass(vsix: Path) -> None:
    result = _run(["node", "--test", "out/test/"], EXT, 120.0)
    assert result.returncode == 0, result.stdout + result.stderr
    counts = dict(
        line[2:].split(" ", 1) for line in result.stdout.splitlines() if line.startswith(("# pass", "# fail"))
    )
    assert counts["fail"] == "0"
    assert int(counts["pass"]) >= 28, result.stdout


# ---- the problem matcher against real `dormant generate` output -------------------------------------


def _broken_copy(tmp_path: Path, name: str) -> Path:
    service = tmp_path / name
    shutil.copytree(GREETER, service, ignore=shutil.ignore_patterns("__pycache__"))
    return service


def _break_schema(service: Path) -> None:
    schema = service / "schemas" / "greeter.json"
    text = schema.read_text()
    text = text.replace('"minLength": 1', '"minLength": "1", "maxLenght": 3')
    text = text.replace('"type": "boolean"', '"type": "bool"')
    schema.write_text(text)


def _break_handler(service: Path) -> None:
    handler = service / "greeter.py"
    text = handler.read_text()
    text = text.replace("request: GreetRequest, ctx", "request: GreetRequst, ctx")
    text = text.replace("-> HttpResponse:", "-> dict:")
    handler.write_text(text)


def _expected(dir_arg: str, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> list[Diagnostic]:
    """The generator's own diagnostics (structured) for the directory as the CLI is given it."""
    with monkeypatch.context() as m:
        m.chdir(cwd)
        with pytest.raises(CodegenError) as info:
            generate(Path(dir_arg))
    return info.value.diagnostics


def _matched(stderr: str) -> dict[str, Any]:
    result = _run(["node", "-e", MATCHER_JS, EXT / "package.json"], EXT, 60.0, input=stderr)
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture
def broken_services(tmp_path: Path) -> Iterator[list[tuple[str, Path]]]:
    """(directory as given to the CLI, cwd): schemas broken three ways plus a schema file that is not
    JSON (a relative path), and handler annotations naming no schema (an absolute path; the generator
    reads the handler only once the schemas are sound)."""
    schema = _broken_copy(tmp_path, "schema-broken")
    _break_schema(schema)
    (schema / "schemas" / "extra.json").write_text('{"A": {"type": "object",}\n')
    handler = _broken_copy(tmp_path, "handler-broken")
    _break_handler(handler)
    yield [("schema-broken", tmp_path), (str(handler), tmp_path)]


def test_problem_matcher_captures_every_diagnostic_of_dormant_generate(
    vsix: Path, broken_services: list[tuple[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen_messages: list[str] = []
    for dir_arg, cwd in broken_services:
        result = _run([DORMANT, "generate", dir_arg], cwd, 120.0)
        assert result.returncode == 1, result.stdout + result.stderr
        expected = _expected(dir_arg, cwd, monkeypatch)
        assert expected, dir_arg
        matched = _matched(result.stderr)
        assert matched["fileLocation"] == ["autoDetect", "${workspaceFolder}"]
        lines = [line for line in result.stderr.splitlines() if line]
        assert len(lines) == len(expected), result.stderr
        for line, got, want in zip(lines, matched["matches"], expected, strict=True):
            assert got is not None, f"the problem matcher does not match {line!r}"
            assert got == {
                "file": want.path,
                "line": want.line,
                "column": want.col,
                "severity": "error",
                "message": want.message,
            }, line
            # autoDetect: an absolute path as is, a relative one from the task's directory.
            assert (cwd / got["file"]).is_file(), got["file"]
            seen_messages.append(got["message"])
    # The three kinds the run was built to produce, each reported and captured.
    assert any("maxLenght" in m for m in seen_messages)
    assert any("'bool' is not a JSON Schema type" in m for m in seen_messages)
    assert any("no schema named 'GreetRequst'" in m for m in seen_messages)
    assert any(m.startswith("invalid JSON") for m in seen_messages)
    absolute = [d for d, _ in broken_services if Path(d).is_absolute()]
    assert absolute, "one run must print absolute paths"


# ---- the shipped meta-schema ------------------------------------------------------------------------


def test_shipped_metaschema_is_a_fresh_export() -> None:
    assert SHIPPED_METASCHEMA.read_text(encoding="utf-8") == render(), (
        "codegen/vscode/schemas/dormant-schema-file.json is stale: run "
        "python -m dormant_codegen.metaschema_export --output codegen/vscode/schemas/dormant-schema-file.json"
    )
    assert render() == render()


def _schema_dirs() -> list[Path]:
    found = {p.parent.parent for p in ROOT.glob("examples/**/schemas/*.json")}
    found |= {p.parent.parent for p in ROOT.glob("tests/fixtures/**/schemas/*.json")}
    found |= {p.parent.parent for p in ROOT.glob("bench/services/**/schemas/*.json")}
    return sorted(d for d in found if "generated" not in d.parts)


def test_metaschema_accepts_every_schema_file_the_generator_accepts() -> None:
    validator = Draft7Validator(json.loads(SHIPPED_METASCHEMA.read_text()))
    accepted = refused = 0
    for service_dir in _schema_dirs():
        rel_paths = sorted(str(p.relative_to(service_dir)) for p in (service_dir / "schemas").glob("*.json"))
        schemas = load_schemas(service_dir, "", rel_paths)
        if schemas.diagnostics:
            refused += 1
            continue
        for rel in rel_paths:
            document = json.loads((service_dir / rel).read_text(encoding="utf-8-sig"))
            errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]
            assert not errors, f"{service_dir / rel}: {errors}"
            accepted += 1
    assert accepted >= 10 and refused >= 2, (accepted, refused)


@pytest.mark.parametrize(
    ("document", "complaint"),
    [
        ({"A": {"type": "bool"}}, "'bool'"),
        ({"A": {"type": ["string", "string"]}}, "is not valid under any of the given schemas"),
        ({"A": {"type": "object", "nullable": True}}, "should not be valid"),
        ({"type": "object", "dependencies": {}}, "should not be valid"),
        ({"A": {"type": "string", "format": "phone"}}, "'phone' is not one of"),
        ({"A": {"maxLenght": 3}}, "'maxLenght' does not match"),
        ({"A": {"minLength": "1"}}, "is not of type 'integer'"),
        ({"A": {"minLength": -1}}, "less than the minimum"),
        ({"A": {"properties": {"x": {"type": "string", "requird": True}}}}, "is not valid under any of"),
        ({"A": {"required": True}}, "is not of type 'array'"),
        ({"bad name": {}}, "does not match '^[A-Za-z_]"),
        ({"A": 3}, "is not of type 'object'"),
        ({"A": {"allOf": []}}, "should be non-empty"),
    ],
)
def test_metaschema_refuses_what_the_generator_refuses(
    document: dict[str, Any], complaint: str, tmp_path: Path
) -> None:
    messages = [e.message for e in Draft7Validator(json.loads(render())).iter_errors(document)]
    assert any(complaint in m for m in messages), messages
    # The generator refuses the same file.
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "doc.json").write_text(json.dumps(document))
    assert load_schemas(tmp_path, "", ["schemas/doc.json"]).diagnostics


def test_metaschema_accepts_legacy_required_and_extensions() -> None:
    validator = Draft7Validator(json.loads(render()))
    document = {
        "A": {
            "type": "object",
            "x-owner": "team",
            "properties": {"id": {"type": "string", "required": True, "format": "uuid"}},
            "$defs": {"B": {"type": ["integer", "null"], "minimum": 0}},
        },
    }
    assert list(validator.iter_errors(document)) == []
    assert list(validator.iter_errors({})) == []
    assert list(validator.iter_errors({"title": "Single", "type": "object"})) == []


# ---- the TestClient debug script ----------------------------------------------------------------------


def test_debug_script_runs_a_function_under_the_test_client(capsys: pytest.CaptureFixture[str]) -> None:
    ok = _run([sys.executable, DEBUG_SCRIPT, GREETER, "greet", '{"name": "Ann"}'], ROOT, 120.0)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"text": "Hello, Ann!"}
    # In process (as the debugger runs it): a typed error is one line and status 1.
    main = runpy.run_path(str(DEBUG_SCRIPT), run_name="dormant_debug_call")["main"]
    assert main([str(GREETER), "greet", '{"name": ""}']) == 1
    assert capsys.readouterr().err.startswith("error: ValidationError: invalid input for greet")
    assert main([str(GREETER), "nosuch"]) == 1
    assert "NotFound" in capsys.readouterr().err


def test_debug_script_reads_json_or_a_file(tmp_path: Path) -> None:
    script = runpy.run_path(str(DEBUG_SCRIPT), run_name="dormant_debug_call")
    read_input = script["read_input"]
    input_file = tmp_path / "input.json"
    input_file.write_text('{"name": "Bo"}')
    assert read_input(f"@{input_file}") == {"name": "Bo"}
    assert read_input("[1, 2]") == [1, 2]
    with pytest.raises(ValueError, match="the input is not valid JSON"):
        read_input("{x")
    with pytest.raises(ValueError, match="is not valid JSON"):
        input_file.write_text("nope")
        read_input(f"@{input_file}")
    with pytest.raises(ValueError, match="cannot read"):
        read_input(f"@{tmp_path / 'missing.json'}")
