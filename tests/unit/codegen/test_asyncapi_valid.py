"""The generated AsyncAPI documents validate against the official AsyncAPI 3.0.0 JSON schema.

Every example and fixture service's committed ``generated/asyncapi.json`` (and a fresh one of the
awkward-schema fixture) must validate against ``tests/fixtures/asyncapi/asyncapi-3.0.0.schema.json``
(vendored from ``@asyncapi/specs``, see its README), with the draft that schema declares, and must give
every function a channel, a ``receive`` operation with MQTT bindings and a ``reply`` object.
"""

from __future__ import annotations

import copy
import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from dormant_codegen.asyncapi import _draft07
from dormant_codegen.generator import generate

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_FILE = ROOT / "tests" / "fixtures" / "asyncapi" / "asyncapi-3.0.0.schema.json"
TYPED = ROOT / "tests" / "fixtures" / "services" / "typed-service"
DOCS = sorted(
    [
        *ROOT.glob("examples/*/generated/asyncapi.json"),
        *ROOT.glob("tests/fixtures/services/*/generated/asyncapi.json"),
    ]
)


@lru_cache(maxsize=1)
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def problems(doc: dict[str, Any]) -> list[str]:
    errors = sorted(validator().iter_errors(doc), key=lambda e: [str(p) for p in e.absolute_path])
    return [f"{'/'.join(str(p) for p in e.absolute_path)}: {e.message[:300]}" for e in errors]


def resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for token in ref.removeprefix("#/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [v for k, v in node.items() if k == "$ref" and isinstance(v, str)]
        return own + [r for v in node.values() for r in all_refs(v)]
    return [r for v in node for r in all_refs(v)] if isinstance(node, list) else []


def test_the_vendored_schema_is_the_official_asyncapi_3_0_0_one() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema"
    assert schema["title"] == "AsyncAPI 3.0.0 schema."
    assert schema["properties"]["asyncapi"] == {
        "type": "string",
        "const": "3.0.0",
        "description": "The AsyncAPI specification version of this document.",
    }
    assert "bindings-mqtt-0.2.0-operation" in schema["definitions"]
    readme = (SCHEMA_FILE.parent / "README.md").read_text()
    assert "@asyncapi/specs" in readme and "Apache-2.0" in readme


def test_every_example_and_fixture_service_is_checked() -> None:
    services = {path.parent.parent.name for path in DOCS}
    assert {"user-service", "greeter", "payments", "typed-service", "probe-service"} <= services


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.parent.parent.name)
def test_generated_document_validates_and_describes_every_function(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert problems(doc) == []
    interface = json.loads((path.parent / "interface.json").read_text())
    service = interface["service"]
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["version"] == interface["interfaceHash"]
    for ref in all_refs(doc):
        resolve(doc, ref)  # KeyError: a dangling reference
    assert interface["functions"], path
    for fn in interface["functions"]:
        channel = doc["channels"][fn]
        assert channel["address"] == f"service/{service}/{fn}"
        operation = doc["operations"][fn]
        assert operation["action"] == "receive"
        assert resolve(doc, operation["channel"]["$ref"]) is channel
        assert operation["bindings"]["mqtt"] == {"qos": 1, "retain": False, "bindingVersion": "0.2.0"}
        request = resolve(doc, resolve(doc, operation["messages"][0]["$ref"])["$ref"])
        assert request["bindings"]["mqtt"]["bindingVersion"] == "0.2.0"
        assert request["headers"]["properties"]["responseTopic"]["pattern"].startswith("^reply/")
        reply = operation["reply"]
        assert reply["address"]["location"] == "$message.header#/responseTopic"
        reply_channel = resolve(doc, reply["channel"]["$ref"])
        assert reply_channel["address"] is None
        answer, error = (resolve(doc, resolve(doc, m["$ref"])["$ref"]) for m in reply["messages"])
        assert answer["payload"] == {"$ref": "#/components/schemas/" + answer["name"]}
        assert error["payload"] == {"$ref": "#/components/schemas/dormant.Error"}
        assert answer["headers"]["properties"]["status"]["enum"] == ["ok", "error"]
        if interface["auth"] != "off":
            assert operation["security"] == [{"$ref": "#/components/securitySchemes/bearer"}]
        if interface["functions"][fn]["roles"]:
            assert operation["x-dormant-roles"] == interface["functions"][fn]["roles"]


def test_a_freshly_generated_document_validates(tmp_path: Path) -> None:
    target = tmp_path / "typed-service"
    shutil.copytree(TYPED, target, ignore=shutil.ignore_patterns("generated", "__pycache__"))
    generate(target)
    fresh = json.loads((target / "generated" / "asyncapi.json").read_text())
    assert problems(fresh) == []
    assert fresh == json.loads((TYPED / "generated" / "asyncapi.json").read_text()), (
        "the committed typed-service/generated is stale: run `dormant generate`"
    )


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("qos 3", lambda d: d["operations"]["placeOrder"]["bindings"]["mqtt"].update(qos=3)),
        ("unknown reply key", lambda d: d["operations"]["placeOrder"]["reply"].update(topic="x")),
        ("no action", lambda d: d["operations"]["placeOrder"].pop("action")),
        (
            "bad binding version",
            lambda d: d["operations"]["placeOrder"]["bindings"]["mqtt"].update(bindingVersion="9.9.9"),
        ),
        (
            "message binding field",
            lambda d: d["components"]["messages"]["placeOrder.request"]["bindings"]["mqtt"].update(qos=1),
        ),
    ],
)
def test_the_validation_catches_a_broken_document(where: str, change: Any) -> None:
    doc = copy.deepcopy(json.loads((TYPED / "generated" / "asyncapi.json").read_text()))
    change(doc)
    assert problems(doc), where


def test_component_schemas_are_draft_07_with_the_same_meaning() -> None:
    """The Draft 07 form accepts and refuses what the service's Draft 2020-12 schema does."""
    doc = json.loads((TYPED / "generated" / "asyncapi.json").read_text())
    root = {"$ref": "#/components/schemas/OrderRequest", "components": doc["components"]}
    draft07 = jsonschema.Draft7Validator(root)
    good = {
        "customer-id": "c1",
        "lines": [{"sku": "a", "qty": 2, "unit-price": None, "class": "cold"}],
        "priority": "urgent",
        "shipTo": {"street": "s", "city": "c", "geo": {"lat": 1, "lon": 2}},
        "point": [1.5, 2],
        "geo": {"lat": 0, "lon": 0},
    }
    assert list(draft07.iter_errors(good)) == []
    for bad in (
        {**good, "point": [1, 2, 3]},  # prefixItems + items: false -> a closed tuple
        {**good, "priority": "someday"},
        {**good, "geo": {"lat": 0}},  # a pointer into another schema, resolved
        {**good, "lines": [{"sku": "a", "qty": 0}]},
        {**good, "extra": 1},
    ):
        assert list(draft07.iter_errors(bad)), bad


def test_draft07_rewrites_what_draft_07_reads_differently() -> None:
    schema = {
        "type": "object",
        "properties": {
            "pair": {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "integer"}},
            "local": {"$ref": "#/$defs/Owner/$defs/Inner", "description": "beside $ref"},
            "enumed": {"enum": [{"$ref": "not a ref"}]},
        },
        "$defs": {"Inner": {"type": "string"}},
        "dependentRequired": {"a": ["b"]},
        "dependentSchemas": {"c": {"required": ["d"]}},
    }
    assert _draft07(schema) == {
        "type": "object",
        "properties": {
            "pair": {"type": "array", "items": [{"type": "string"}], "additionalItems": {"type": "integer"}},
            "local": {
                "description": "beside $ref",
                "allOf": [{"$ref": "#/components/schemas/Owner/definitions/Inner"}],
            },
            "enumed": {"enum": [{"$ref": "not a ref"}]},
        },
        "definitions": {"Inner": {"type": "string"}},
        "dependencies": {"a": ["b"], "c": {"required": ["d"]}},
    }
