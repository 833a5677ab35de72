"""The AsyncAPI 3.0 document of a service: one channel per function topic, request/reply operations.

Each function ``fn`` gets channel ``fn`` at ``service/{svc}/{fn}`` carrying the request message, a
reply channel whose address is the request's MQTT 5 Response Topic, and a ``receive`` operation
with a ``reply``. Message payloads reference ``components.schemas``, which hold every schema.
Unless the service's authentication is off, each operation names the ``bearer`` security scheme (the
token travels in the MQTT 5 user property ``authorization``), and ``x-dormant-roles`` lists the roles a
caller needs (at least one of them); ``x-dormant-auth`` on ``info`` is the service's mode.
"""

from __future__ import annotations

import copy
from typing import Any

from dormant import wire

from .constants import HEADER_TEXT, JSON_HEADER_KEY

_DEFS_PREFIX = "#/$defs/"
_COMPONENTS_PREFIX = "#/components/schemas/"


def _retarget(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: (
                _COMPONENTS_PREFIX + value.removeprefix(_DEFS_PREFIX)
                if key == "$ref" and isinstance(value, str) and value.startswith(_DEFS_PREFIX)
                else _retarget(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_retarget(item) for item in node]
    return copy.deepcopy(node)


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
        messages[request_id] = {
            "name": in_schema,
            "contentType": "application/json",
            "correlationId": {"location": "$message.header#/correlationData"},
            "payload": {"$ref": _COMPONENTS_PREFIX + in_schema},
        }
        messages[reply_id] = {
            "name": out_schema,
            "contentType": "application/json",
            "correlationId": {"location": "$message.header#/correlationData"},
            "payload": {"$ref": _COMPONENTS_PREFIX + out_schema},
        }
        channels[fn] = {
            "address": wire.function_topic(service, fn),
            "messages": {"request": {"$ref": f"#/components/messages/{request_id}"}},
        }
        channels[reply_id] = {
            "address": None,
            "description": "The caller's inbox, given as the request's MQTT 5 Response Topic.",
            "messages": {"reply": {"$ref": f"#/components/messages/{reply_id}"}},
        }
        operations[fn] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{fn}"},
            "messages": [{"$ref": f"#/channels/{fn}/messages/request"}],
            "bindings": {"mqtt": {"qos": 1}},
            "reply": {
                "address": {"location": "$message.header#/responseTopic"},
                "channel": {"$ref": f"#/channels/{reply_id}"},
                "messages": [{"$ref": f"#/channels/{reply_id}/messages/reply"}],
            },
        }
        if auth != "off":
            operations[fn]["security"] = [{"$ref": "#/components/securitySchemes/bearer"}]
        if roles.get(fn):
            operations[fn]["x-dormant-roles"] = list(roles[fn])
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
            "schemas": {name: _retarget(schemas[name]) for name in sorted(schemas)},
        },
    }
