"""The AsyncAPI 3.0 document of a service: one channel per function topic, request/reply operations.

The document describes the service's side (it ``receive``s calls). Each function ``fn`` gets:

- channel ``fn`` at ``service/{svc}/{fn}`` carrying the request message (``{fn}.request``);
- channel ``{fn}.reply``, address ``null`` (chosen per call: the request's MQTT 5 Response Topic, always
  under ``reply/``), carrying the answer (``{fn}.reply``) or a typed error (``dormant.error``);
- operation ``fn``: ``receive`` on the request channel, MQTT operation bindings (QoS 1, not retained;
  binding version 0.2.0), and a ``reply`` whose address is the request's ``responseTopic`` header and
  whose messages are the answer and the error.

Messages carry MQTT message bindings (content type, correlation data = the callId, response topic) and
``headers`` for the MQTT 5 properties and user properties a call carries (docs/wire-protocol.md);
``correlationId`` points at the Correlation Data. Unless the service's authentication is off, each
operation names the ``bearer`` security scheme (the token travels in the MQTT 5 user property
``authorization``), and ``x-dormant-roles`` lists the roles a caller needs (at least one of them);
``x-dormant-auth`` on ``info`` is the service's mode.

Payload schemas: ``components.schemas`` holds every named schema in the AsyncAPI Schema format (the
default ``schemaFormat``, a superset of JSON Schema Draft 07), so AsyncAPI tools read them without a
custom format. The service's schemas are Draft 2020-12; what Draft 07 says differently is rewritten
(``_draft07``): ``$defs`` -> ``definitions``, ``prefixItems``/``items`` -> ``items``/``additionalItems``,
``dependentRequired``/``dependentSchemas`` -> ``dependencies``, and a ``$ref`` with sibling keywords
(ignored beside ``$ref`` in Draft 07) -> ``allOf``. Keywords Draft 07 lacks (``unevaluated*``,
``$dynamicRef``) stay as written: a Draft 07 reader ignores them; the runtime validates every call with
the Draft 2020-12 schemas of ``interface.json``. The generated document validates against the official
AsyncAPI 3.0.0 JSON schema (tests/unit/codegen/test_asyncapi_valid.py).
"""

from __future__ import annotations

import copy
from typing import Any

from dormant import wire

from .constants import HEADER_TEXT, JSON_HEADER_KEY

_DEFS_PREFIX = "#/$defs/"
_COMPONENTS_PREFIX = "#/components/schemas/"
MQTT_BINDING_VERSION = "0.2.0"
ERROR_SCHEMA = "dormant.Error"
"""The component name of the error payload: a dot, so no service schema can take it."""
ERROR_MESSAGE = "dormant.error"
ERROR_TYPES = (
    "ValidationError",
    "BusinessLogicError",
    "SystemError",
    "TimeoutError",
    "Unauthenticated",
    "Forbidden",
    "NotFound",
    "Unavailable",
    "Conflict",
    "Throttled",
)

_VALUE_KEYWORDS = frozenset({"enum", "const", "default", "examples"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_ONE = frozenset(
    {
        "not", "if", "then", "else", "additionalProperties", "unevaluatedProperties", "unevaluatedItems",
        "contains", "propertyNames", "contentSchema", "items",
    }
)  # fmt: skip
_POINTER_RENAMES = {"$defs": "definitions", "prefixItems": "items"}


def _retarget_ref(ref: str) -> str:
    """A bundle ``$ref`` (``#/$defs/Name/...``) as a pointer into ``components.schemas`` (Draft 07 form)."""
    if not ref.startswith(_DEFS_PREFIX):
        return ref
    name, _, rest = ref.removeprefix(_DEFS_PREFIX).partition("/")
    tokens = [_POINTER_RENAMES.get(token, token) for token in rest.split("/")] if rest else []
    return "/".join([_COMPONENTS_PREFIX + name, *tokens])


def _draft07(node: Any) -> Any:
    """Schema ``node`` (Draft 2020-12, bundle ``$ref``s) in the Draft 07 form described in the module
    docstring, its ``$ref``s pointing into ``components.schemas``."""
    if not isinstance(node, dict):
        return copy.deepcopy(node)
    out: dict[str, Any] = {}
    dependencies: dict[str, Any] = {}
    for key, value in node.items():
        if key in _VALUE_KEYWORDS:
            out[key] = copy.deepcopy(value)
        elif key == "$ref" and isinstance(value, str):
            out[key] = _retarget_ref(value)
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            converted = {name: _draft07(sub) for name, sub in value.items()}
            if key == "dependentSchemas":
                dependencies.update(converted)
            else:
                out["definitions" if key == "$defs" else key] = converted
        elif key == "dependentRequired" and isinstance(value, dict):
            dependencies.update(copy.deepcopy(value))
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out["items" if key == "prefixItems" else key] = [_draft07(sub) for sub in value]
        elif key == "items" and "prefixItems" in node:
            out["additionalItems"] = _draft07(value)
        elif key in _SCHEMA_ONE:
            out[key] = _draft07(value)
        else:
            out[key] = copy.deepcopy(value)
    if dependencies:
        out["dependencies"] = dependencies
    if "$ref" in out and len(out) > 1:
        # Draft 07 ignores every keyword beside $ref: keep them meaningful under allOf.
        ref = out.pop("$ref")
        out["allOf"] = [{"$ref": ref}, *out.get("allOf", [])]
    return out


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "A typed error answer (MQTT 5 user property status=error).",
        "properties": {
            "type": {"type": "string", "enum": list(ERROR_TYPES)},
            "message": {"type": "string"},
            "details": {},
        },
        "required": ["type", "message"],
    }


_CORRELATION = {
    "type": "string",
    "description": "The callId: random bytes (at least 16, at most 256); the answer echoes them.",
}
_REQUEST_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "MQTT 5 properties and user properties of a call (docs/wire-protocol.md).",
    "properties": {
        "responseTopic": {
            "type": "string",
            "pattern": "^reply/[^/#+]",
            "description": "MQTT 5 Response Topic: the caller's inbox, where the answer goes.",
        },
        "correlationData": {**_CORRELATION, "description": "MQTT 5 Correlation Data: the callId."},
        "messageExpiryInterval": {
            "type": "integer",
            "minimum": 1,
            "description": "MQTT 5 Message Expiry Interval: the caller's timeout in seconds.",
        },
        "deadline": {
            "type": "string",
            "pattern": "^[0-9]{1,15}$",
            "description": "User property: absolute deadline, milliseconds since the epoch.",
        },
        "authorization": {
            "type": "string",
            "description": "User property: 'Bearer <token>' (an OIDC access token).",
        },
        "traceparent": {"type": "string", "description": "User property: W3C trace context."},
        "tracestate": {"type": "string", "description": "User property: W3C trace state."},
    },
    "required": ["correlationData"],
}
_REPLY_HEADERS: dict[str, Any] = {
    "type": "object",
    "description": "MQTT 5 properties and user properties of an answer.",
    "properties": {
        "correlationData": {**_CORRELATION, "description": "The request's Correlation Data, echoed."},
        "status": {"type": "string", "enum": ["ok", "error"], "description": "User property."},
    },
    "required": ["correlationData", "status"],
}


def _message(name: str, payload_schema: str, headers: dict[str, Any], *, request: bool) -> dict[str, Any]:
    bindings: dict[str, Any] = {
        "contentType": "application/json",
        "correlationData": dict(_CORRELATION),
        "bindingVersion": MQTT_BINDING_VERSION,
    }
    if request:
        bindings["responseTopic"] = dict(_REQUEST_HEADERS["properties"]["responseTopic"])
    return {
        "name": name,
        "contentType": "application/json",
        "headers": copy.deepcopy(headers),
        "correlationId": {"location": "$message.header#/correlationData"},
        "payload": {"$ref": _COMPONENTS_PREFIX + payload_schema},
        "bindings": {"mqtt": bindings},
    }


def build_asyncapi(
    service: str,
    interface_hash: str,
    functions: dict[str, tuple[str, str]],
    schemas: dict[str, dict[str, Any]],
    *,
    auth: str = "required",
    roles: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """``functions`` maps each function name to its (input schema name, output schema name);
    ``roles`` each function name to the roles it requires."""
    roles = roles or {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for fn in sorted(functions):
        in_schema, out_schema = functions[fn]
        request_id, reply_id = f"{fn}.request", f"{fn}.reply"
        messages[request_id] = _message(in_schema, in_schema, _REQUEST_HEADERS, request=True)
        messages[reply_id] = _message(out_schema, out_schema, _REPLY_HEADERS, request=False)
        channels[fn] = {
            "address": wire.function_topic(service, fn),
            "title": f"{service}.{fn} calls",
            "messages": {"request": {"$ref": f"#/components/messages/{request_id}"}},
        }
        channels[reply_id] = {
            "address": None,
            "description": "The caller's inbox, given as the request's MQTT 5 Response Topic "
            "(always under reply/).",
            "messages": {
                "reply": {"$ref": f"#/components/messages/{reply_id}"},
                "error": {"$ref": f"#/components/messages/{ERROR_MESSAGE}"},
            },
        }
        operations[fn] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{fn}"},
            "summary": f"Call {fn}: {in_schema} in, {out_schema} or a typed error out.",
            "messages": [{"$ref": f"#/channels/{fn}/messages/request"}],
            "bindings": {"mqtt": {"qos": 1, "retain": False, "bindingVersion": MQTT_BINDING_VERSION}},
            "reply": {
                "address": {
                    "location": "$message.header#/responseTopic",
                    "description": "The request's MQTT 5 Response Topic.",
                },
                "channel": {"$ref": f"#/channels/{reply_id}"},
                "messages": [
                    {"$ref": f"#/channels/{reply_id}/messages/reply"},
                    {"$ref": f"#/channels/{reply_id}/messages/error"},
                ],
            },
        }
        if auth != "off":
            operations[fn]["security"] = [{"$ref": "#/components/securitySchemes/bearer"}]
        if roles.get(fn):
            operations[fn]["x-dormant-roles"] = list(roles[fn])
    if functions:
        messages[ERROR_MESSAGE] = _message(ERROR_SCHEMA, ERROR_SCHEMA, _REPLY_HEADERS, request=False)
    component_schemas = {name: _draft07(schemas[name]) for name in sorted(schemas)}
    component_schemas[ERROR_SCHEMA] = _error_schema()
    return {
        JSON_HEADER_KEY: HEADER_TEXT,
        "asyncapi": "3.0.0",
        "info": {"title": service, "version": interface_hash, "x-dormant-auth": auth},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "messages": messages,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "An OIDC access token, sent as the MQTT 5 user property "
                    "'authorization' ('Bearer <token>'), or headers.authorization in the envelope form.",
                }
            },
            "schemas": component_schemas,
        },
    }
