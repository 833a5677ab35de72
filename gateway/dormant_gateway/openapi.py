"""The OpenAPI 3.0 document of the gateway, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

NAME = {"type": "string", "pattern": "^[a-z0-9-]{1,64}$"}
TARGET = {"type": "string", "pattern": "^[a-z0-9-]{1,64}\\.[A-Za-z][A-Za-z0-9_]*$"}
TIME = {"type": "string", "format": "date-time"}
NTIME = {"type": "string", "format": "date-time", "nullable": True}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
WEIGHTS = {"type": "object", "additionalProperties": {"type": "integer"}}
ANY: dict[str, Any] = {}

ERROR_STATUSES = {
    "400": "ValidationError: the request is malformed or breaks a rule",
    "401": "Unauthenticated: no valid bearer token",
    "403": "Forbidden: the role may not do this",
    "404": "NotFound",
    "409": "Conflict",
    "413": "PayloadTooLarge",
    "415": "UnsupportedMediaType",
    "422": "BusinessLogicError raised by the function",
    "429": "TooManyRequests (see Retry-After)",
    "500": "SystemError",
    "503": "Unavailable: nothing serves the function, or a dependency is down",
    "504": "TimeoutError",
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["type", "message"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}, "details": ANY},
    },
    "Function": {
        "type": "object",
        "required": ["name", "runtime", "handler", "memorySize", "timeout", "environment", "tags"],
        "properties": {
            "name": NAME,
            "runtime": {"type": "string"},
            "handler": {"type": "string"},
            "memorySize": {"type": "integer"},
            "timeout": {"type": "integer"},
            "environment": STR_MAP,
            "tags": STR_MAP,
            "description": {"type": "string"},
            "concurrency": {"type": "object"},
            "owner": {"type": "string"},
            "createdAt": TIME,
            "updatedAt": TIME,
            "deletedAt": NTIME,
        },
    },
    "FunctionCreate": {
        "type": "object",
        "required": ["name", "runtime", "handler"],
        "additionalProperties": False,
        "properties": {
            "name": NAME,
            "runtime": {"type": "string", "enum": ["python3.11"]},
            "handler": {"type": "string", "example": "service.UserService"},
            "memorySize": {"type": "integer", "minimum": 128, "maximum": 10240, "multipleOf": 64},
            "timeout": {"type": "integer", "minimum": 1, "maximum": 900},
            "environment": STR_MAP,
            "tags": STR_MAP,
            "description": {"type": "string", "maxLength": 256},
        },
    },
    "FunctionUpdate": {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {
            "runtime": {"type": "string", "enum": ["python3.11"]},
            "handler": {"type": "string"},
            "memorySize": {"type": "integer", "minimum": 128, "maximum": 10240, "multipleOf": 64},
            "timeout": {"type": "integer", "minimum": 1, "maximum": 900},
            "environment": STR_MAP,
            "tags": STR_MAP,
            "description": {"type": "string", "maxLength": 256},
        },
    },
    "FunctionPage": {
        "type": "object",
        "required": ["items", "nextCursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Function"}},
            "nextCursor": {"type": "string", "nullable": True},
        },
    },
    "Version": {
        "type": "object",
        "required": ["function", "version", "image", "status"],
        "properties": {
            "function": NAME,
            "version": {"type": "integer"},
            "image": {"type": "string"},
            "sha256": {"type": "string", "nullable": True},
            "baseImage": {"type": "string"},
            "interfaceHash": {"type": "string"},
            "functions": {"type": "array", "items": {"type": "string"}},
            "status": {"type": "string"},
            "createdAt": TIME,
            "createdBy": {"type": "string"},
            "created": {"type": "boolean"},
            "uploadSha256": {"type": "string"},
        },
    },
    "Alias": {
        "type": "object",
        "required": ["function", "alias", "weights"],
        "properties": {"function": NAME, "alias": {"type": "string"}, "weights": WEIGHTS, "updatedAt": NTIME},
    },
    "AliasWrite": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,63}$"},
            "version": {"type": "integer", "minimum": 1},
            "weights": WEIGHTS,
        },
    },
    "Deployment": {
        "type": "object",
        "required": ["functionName", "version"],
        "properties": {
            "functionName": NAME,
            "version": {"type": "integer", "nullable": True},
            "environment": {"type": "string"},
            "replicas": {"type": "integer"},
            "serving": {"type": "integer"},
            "state": {"type": "string"},
            "reason": {"type": "string"},
            "strategy": {"type": "string", "nullable": True},
            "alias": {"type": "string"},
            "updatedAt": NTIME,
            "deployedBy": {"type": "string", "nullable": True},
            "rolledBackFrom": {"type": "integer"},
        },
    },
    "DeploymentCreate": {
        "type": "object",
        "required": ["functionName"],
        "properties": {
            "functionName": NAME,
            "version": {
                "oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": "^v?[0-9]+$"}]
            },
            "strategy": {"type": "string", "example": "AllAtOnce"},
            "environment": {"type": "string", "enum": ["production", "staging", "dev"]},
            "replicas": {"type": "integer", "minimum": 0, "maximum": 1000},
            "config": {"type": "object"},
        },
    },
    "Trigger": {
        "type": "object",
        "required": ["id", "function", "type", "target", "config", "enabled", "metrics"],
        "properties": {
            "id": {"type": "string"},
            "function": NAME,
            "type": {"type": "string", "enum": ["http", "cron", "queue"]},
            "target": {"type": "string"},
            "config": {"type": "object"},
            "enabled": {"type": "boolean"},
            "createdAt": TIME,
            "createdBy": {"type": "string"},
            "metrics": {"type": "object"},
        },
    },
    "TriggerCreate": {
        "type": "object",
        "required": ["type", "function"],
        "properties": {
            "type": {"type": "string", "enum": ["http", "cron", "queue"]},
            "function": {"type": "string", "pattern": "^[A-Za-z][A-Za-z0-9_]*$"},
            "enabled": {"type": "boolean"},
            "config": {
                "type": "object",
                "description": "cron: schedule, timezone, input, maxAttempts; queue: queue, batchSize,"
                " maxAttempts, backoffSeconds, deadLetterQueue; http: methods, path, cors, auth;"
                " any: alias or version",
            },
        },
    },
    "Invocation": {
        "type": "object",
        "required": ["callId", "function", "status", "attempts"],
        "properties": {
            "callId": {"type": "string"},
            "function": {"type": "string"},
            "version": {"type": "integer", "nullable": True},
            "alias": {"type": "string", "nullable": True},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "dead"]},
            "attempts": {"type": "integer"},
            "maxAttempts": {"type": "integer"},
            "result": ANY,
            "error": {"type": "object", "nullable": True},
            "source": {"type": "string"},
            "triggerId": {"type": "string", "nullable": True},
            "scheduledAt": NTIME,
            "nextAttemptAt": NTIME,
            "createdAt": TIME,
            "updatedAt": TIME,
            "finishedAt": NTIME,
        },
    },
    "Accepted": {
        "type": "object",
        "required": ["callId", "status", "location"],
        "properties": {
            "callId": {"type": "string"},
            "status": {"type": "string"},
            "location": {"type": "string"},
        },
    },
}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["items"],
        "properties": {"items": {"type": "array", "items": _ref(name)}},
    }


def _op(
    summary: str,
    tag: str,
    ok: dict[str, Any],
    *,
    errors: tuple[str, ...] = ("400", "401", "403", "404", "429", "503"),
    body: dict[str, Any] | None = None,
    body_type: str = "application/json",
    params: list[dict[str, Any]] | None = None,
    secure: bool = True,
) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status, schema in ok.items():
        if schema is None:
            responses[status] = {"description": "done"}
        else:
            responses[status] = {"description": "ok", "content": {"application/json": {"schema": schema}}}
    for status in errors:
        responses[status] = {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {
            "required": body_type != "application/json",
            "content": {body_type: {"schema": body}},
        }
    if not secure:
        operation["security"] = []
    return operation


def _path_param(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


FN = _path_param("name", NAME)
VERSION_PARAM = _path_param("version", {"type": "string", "pattern": "^v?[0-9]{1,9}$"})
ALIAS_PARAM = _path_param("alias", {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,63}$"})
TRIGGER = _path_param("trigger_id", {"type": "string"})
MANAGE_ERRORS = ("400", "401", "403", "404", "409", "429", "503")
INVOKE_ERRORS = ("400", "401", "403", "404", "413", "422", "429", "500", "503", "504")
INVOKE_PARAMS = [
    _path_param("name", TARGET),
    _query("alias", {"type": "string"}),
    _query("version", {"type": "string", "pattern": "^v?[0-9]{1,9}$"}),
    _query("timeout", {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": 900}),
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 255},
    },
]

_NSTR = {"type": "string", "nullable": True}
LOG_RECORD = {
    "type": "object",
    "required": ["timestamp", "level", "message"],
    "properties": {
        "timestamp": TIME,
        "level": {"type": "string", "enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]},
        "requestId": _NSTR,
        "functionName": _NSTR,
        "version": _NSTR,
        "message": {"type": "string"},
        "duration": {"type": "number", "nullable": True},
        "traceId": _NSTR,
        "spanId": _NSTR,
    },
}
LOG_PAGE = {
    "type": "object",
    "required": ["function", "items"],
    "properties": {"function": NAME, "items": {"type": "array", "items": LOG_RECORD}},
}
LOG_PARAMS = [
    _query("version", {"type": "string", "pattern": "^v?[0-9]{1,9}$"}),
    _query("since", {"type": "string", "example": "10m"}),
    _query("callId", {"type": "string", "maxLength": 512}),
    _query("level", {"type": "string", "enum": ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]}),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),
    _query("follow", {"type": "string", "enum": ["true", "false"]}),
]


def openapi_document(server_url: str) -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/health": {"get": _op("Liveness", "meta", {"200": {"type": "object"}}, errors=(), secure=False)},
        "/api/v1/functions": {
            "get": _op(
                "List functions",
                "functions",
                {"200": _ref("FunctionPage")},
                errors=("400", "401", "403", "503"),
                params=[
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}),
                    _query("cursor", {"type": "string"}),
                    _query("nameContains", {"type": "string"}),
                    _query("runtime", {"type": "string"}),
                    _query("tag", {"type": "string", "pattern": "^[^:]+:.*$"}),
                    _query("includeDeleted", {"type": "string", "enum": ["true", "false"]}),
                ],
            ),
            "post": _op(
                "Create a function",
                "functions",
                {"201": _ref("Function")},
                errors=MANAGE_ERRORS,
                body=_ref("FunctionCreate"),
            ),
        },
        "/api/v1/functions/{name}": {
            "parameters": [FN],
            "get": _op(
                "Get a function with metrics and recent invocations", "functions", {"200": _ref("Function")}
            ),
            "patch": _op(
                "Update settings",
                "functions",
                {"200": _ref("Function")},
                errors=MANAGE_ERRORS,
                body=_ref("FunctionUpdate"),
            ),
            "delete": _op("Soft delete (admin)", "functions", {"204": None}, errors=MANAGE_ERRORS),
        },
        "/api/v1/functions/{name}/restore": {
            "parameters": [FN],
            "post": _op(
                "Restore a deleted function within its retention period (admin)",
                "functions",
                {"200": _ref("Function")},
                errors=MANAGE_ERRORS,
            ),
        },
        "/api/v1/functions/{name}/environment": {
            "parameters": [FN],
            "put": _op(
                "Set environment variables (at most 4 KB)",
                "functions",
                {"200": {"type": "object"}},
                errors=MANAGE_ERRORS,
                body={"type": "object", "required": ["variables"], "properties": {"variables": STR_MAP}},
            ),
        },
        "/api/v1/functions/{name}/config": {
            "parameters": [FN],
            "get": _op(
                "Live configuration (ctx.config): values, revision, published",
                "functions",
                {"200": {"type": "object"}},
            ),
            "put": _op(
                "Replace the live configuration; answers once the mesh has it (wait up to ?wait=S)",
                "functions",
                {"200": {"type": "object"}},
                errors=MANAGE_ERRORS,
                body={"type": "object", "required": ["values"], "properties": {"values": {"type": "object"}}},
                params=[_query("wait", {"type": "integer", "minimum": 0, "maximum": 30})],
            ),
            "patch": _op(
                "Merge into the live configuration (a null value removes that name)",
                "functions",
                {"200": {"type": "object"}},
                errors=MANAGE_ERRORS,
                body={"type": "object", "required": ["values"], "properties": {"values": {"type": "object"}}},
                params=[_query("wait", {"type": "integer", "minimum": 0, "maximum": 30})],
            ),
        },
        "/api/v1/functions/{name}/concurrency": {
            "parameters": [FN],
            "put": _op(
                "Set concurrency and keep-warm settings",
                "functions",
                {"200": {"type": "object"}},
                errors=MANAGE_ERRORS,
                body={"type": "object"},
            ),
        },
        "/api/v1/functions/{name}/scaling": {
            "parameters": [FN],
            "get": _op("Replica scaling settings", "functions", {"200": {"type": "object"}}),
            "put": _op(
                "Set replica scaling (minInstances, maxInstances, targetConcurrency, cooldowns, schedules)",
                "functions",
                {"200": {"type": "object"}},
                errors=MANAGE_ERRORS,
                body={"type": "object"},
            ),
        },
        "/api/v1/functions/{name}/logs": {
            "parameters": [FN],
            "get": {
                **_op(
                    "The function's log records, newest `limit` oldest first; follow=true: NDJSON, then"
                    " each new record as it is stored",
                    "functions",
                    {},
                    params=LOG_PARAMS,
                ),
                "responses": {
                    "200": {
                        "description": "records (follow=true: a record per line; empty lines keep alive)",
                        "content": {
                            "application/json": {"schema": LOG_PAGE},
                            "application/x-ndjson": {"schema": {"type": "string"}},
                        },
                    },
                    **{
                        s: {
                            "description": ERROR_STATUSES[s],
                            "content": {"application/json": {"schema": _ref("Error")}},
                        }
                        for s in ("400", "401", "403", "404", "429", "503")
                    },
                },
            },
        },
        "/api/v1/functions/{name}/versions": {
            "parameters": [FN],
            "get": _op("List versions", "versions", {"200": _list("Version")}),
            "post": _op(
                "Upload code as a new version: a ZIP of a service directory, at most 50 MB"
                " (Content-Type application/zip or application/octet-stream)",
                "versions",
                {"200": _ref("Version"), "201": _ref("Version")},
                errors=(*MANAGE_ERRORS, "413", "415"),
                body={"type": "string", "format": "binary"},
                body_type="application/octet-stream",
            ),
        },
        "/api/v1/functions/{name}/versions/{version}": {
            "parameters": [FN, VERSION_PARAM],
            "get": _op("Get a version", "versions", {"200": _ref("Version")}),
            "delete": _op(
                "Deprecate a version nothing routes to (admin)",
                "versions",
                {"204": None},
                errors=MANAGE_ERRORS,
            ),
        },
        "/api/v1/functions/{name}/aliases": {
            "parameters": [FN],
            "get": _op("List aliases", "aliases", {"200": _list("Alias")}),
            "post": _op(
                "Create an alias",
                "aliases",
                {"201": _ref("Alias")},
                errors=MANAGE_ERRORS,
                body=_ref("AliasWrite"),
            ),
        },
        "/api/v1/functions/{name}/aliases/{alias}": {
            "parameters": [FN, ALIAS_PARAM],
            "get": _op("Get an alias", "aliases", {"200": _ref("Alias")}),
            "put": _op(
                "Move an alias (version or weights)",
                "aliases",
                {"200": _ref("Alias")},
                errors=MANAGE_ERRORS,
                body=_ref("AliasWrite"),
            ),
        },
        "/api/v1/functions/{name}/triggers": {
            "parameters": [FN],
            "get": _op("List triggers with metrics", "triggers", {"200": _list("Trigger")}),
            "post": _op(
                "Create a trigger",
                "triggers",
                {"201": _ref("Trigger")},
                errors=MANAGE_ERRORS,
                body=_ref("TriggerCreate"),
            ),
        },
        "/api/v1/functions/{name}/triggers/{trigger_id}": {
            "parameters": [FN, TRIGGER],
            "get": _op("Get a trigger", "triggers", {"200": _ref("Trigger")}),
            "delete": _op("Delete a trigger", "triggers", {"204": None}, errors=MANAGE_ERRORS),
        },
        "/api/v1/functions/{name}/triggers/{trigger_id}/enable": {
            "parameters": [FN, TRIGGER],
            "put": _op("Enable a trigger", "triggers", {"200": _ref("Trigger")}, errors=MANAGE_ERRORS),
        },
        "/api/v1/functions/{name}/triggers/{trigger_id}/disable": {
            "parameters": [FN, TRIGGER],
            "put": _op("Disable a trigger", "triggers", {"200": _ref("Trigger")}, errors=MANAGE_ERRORS),
        },
        "/api/v1/functions/{name}/invoke": {
            "post": _op(
                "Invoke and wait for the result",
                "invoke",
                {"200": ANY},
                errors=INVOKE_ERRORS,
                body=ANY,
                params=INVOKE_PARAMS,
            ),
        },
        "/api/v1/functions/{name}/invoke-async": {
            "post": _op(
                "Queue an invocation (at most 256 KB)",
                "invoke",
                {"202": _ref("Accepted")},
                errors=INVOKE_ERRORS,
                body=ANY,
                params=[
                    *INVOKE_PARAMS,
                    _query("maxAttempts", {"type": "integer", "minimum": 1, "maximum": 100}),
                ],
            ),
        },
        "/api/v1/functions/{name}/invoke-stream": {
            "post": {
                **_op(
                    "Invoke; the answer as server-sent events",
                    "invoke",
                    {},
                    errors=INVOKE_ERRORS,
                    body=ANY,
                    params=INVOKE_PARAMS,
                ),
                "responses": {
                    "200": {
                        "description": "events accepted, then result or error",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **{
                        s: {
                            "description": ERROR_STATUSES[s],
                            "content": {"application/json": {"schema": _ref("Error")}},
                        }
                        for s in INVOKE_ERRORS
                    },
                },
            },
        },
        "/api/v1/invocations": {
            "get": _op(
                "List invocations (status=dead: the dead letters)",
                "invoke",
                {"200": _list("Invocation")},
                errors=("400", "401", "403", "503"),
                params=[
                    _query("status", {"type": "string", "enum": ["queued", "running", "succeeded", "dead"]}),
                    _query("function", NAME),
                    _query("triggerId", {"type": "string"}),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}),
                ],
            ),
        },
        "/api/v1/invocations/{call_id}": {
            "parameters": [_path_param("call_id", {"type": "string"})],
            "get": _op("An async invocation's state and result", "invoke", {"200": _ref("Invocation")}),
        },
        "/api/v1/deployments": {
            "post": _op(
                "Deploy a version (production: operator; dev/staging: developer)",
                "deployments",
                {"201": _ref("Deployment")},
                errors=MANAGE_ERRORS,
                body=_ref("DeploymentCreate"),
            ),
        },
        "/api/v1/deployments/{name}": {
            "parameters": [FN],
            "get": _op("Where a deployment stands", "deployments", {"200": _ref("Deployment")}),
        },
        "/api/v1/deployments/{name}/rollback": {
            "parameters": [FN],
            "post": _op(
                "Roll back to a version (default: the previous one)",
                "deployments",
                {"200": _ref("Deployment")},
                errors=MANAGE_ERRORS,
                body={"type": "object", "properties": {"version": {"type": "integer", "minimum": 1}}},
            ),
        },
        "/api/v1/deployments/{name}/promote": {
            "parameters": [FN],
            "post": _op(
                "Promote a rollout waiting for it (manual promotion, A/B)",
                "deployments",
                {"200": {"type": "object"}},
                errors=MANAGE_ERRORS,
            ),
        },
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Dormant gateway",
            "version": "1.0.0",
            "description": "Control-plane API and invoke endpoints of a Dormant function mesh.",
        },
        "servers": [{"url": server_url}],
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": SCHEMAS,
        },
        "paths": paths,
    }
