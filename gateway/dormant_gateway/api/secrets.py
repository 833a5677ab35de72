"""``/api/v1/functions/{name}/secrets``: a function's own secrets in the secrets store (OpenBao).

``PUT`` with ``{"secrets": {"NAME": "value" | {"field": "value", ...}}}`` writes a new version of each
(a plain value is the field ``value``), rewrites the function's policy (``dormant-fn-{name}``: its own
secrets and the shared ones its environment references) and records in the audit log which names
changed; ``GET`` lists names, versions and field names. Values are never answered, logged or stored
in the catalog: the answer to a ``PUT`` holds names and versions only. The store is the one
``DORMANT_VAULT_ADDR`` names, written with ``DORMANT_VAULT_TOKEN``; without them both methods answer 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from dormant.errors import NotFound, ValidationError
from dormant_catalog.audit import record_audit
from dormant_catalog.environment import SECRET_NAME
from dormant_catalog.gateway import functions as function_sql
from dormant_secrets import SecretsConfig, SecretsError
from dormant_secrets.errors import SecretsNotConfigured
from dormant_secrets.openbao import OpenBaoAdmin

from ..auth import Action
from ..http_errors import HttpError
from .common import authorize, json_object, json_response, service_name, state

MAX_SECRETS = 100
MAX_VALUE_BYTES = 64 * 1024


def _admin(request: Request) -> OpenBaoAdmin:
    admin: OpenBaoAdmin | None = getattr(request.app.state, "secrets_admin", None)
    if admin is None:
        try:
            admin = OpenBaoAdmin.from_config(SecretsConfig.from_env())
        except (SecretsNotConfigured, ValueError) as exc:
            raise HttpError(503, "SecretsNotConfigured", str(exc)) from None
        request.app.state.secrets_admin = admin
    return admin


def _store_error(exc: SecretsError) -> HttpError:
    return HttpError(502, "SecretsStoreError", str(exc))


def _parse(body: Mapping[str, Any]) -> dict[str, str | dict[str, str]]:
    """The ``secrets`` of a PUT body; ``ValidationError`` naming names, never values."""
    secrets = body.get("secrets")
    if set(body) - {"secrets"}:
        raise ValidationError(f"unknown fields: {', '.join(sorted(set(body) - {'secrets'}))}")
    if not isinstance(secrets, dict) or not secrets:
        raise ValidationError('the body must be {"secrets": {"NAME": "value", ...}} with at least one secret')
    if len(secrets) > MAX_SECRETS:
        raise ValidationError(f"at most {MAX_SECRETS} secrets at once")
    parsed: dict[str, str | dict[str, str]] = {}
    for name, value in secrets.items():
        if not SECRET_NAME.fullmatch(name):
            raise ValidationError(
                f"{name!r} is not a secret name (1 to 128 letters, digits, '_', '.' or '-')"
            )
        if isinstance(value, str):
            fields = {"value": value}
        elif isinstance(value, dict) and value:
            fields = value
        else:
            raise ValidationError(
                f"secret {name}: a value is a string or a non-empty object of string fields"
            )
        for key, item in fields.items():
            if not SECRET_NAME.fullmatch(key) or not isinstance(item, str):
                raise ValidationError(f"secret {name}: fields are named like secrets and hold strings")
            if len(item.encode()) > MAX_VALUE_BYTES or "\0" in item:
                raise ValidationError(
                    f"secret {name}: a value is at most {MAX_VALUE_BYTES} bytes, without NUL"
                )
        parsed[name] = value if isinstance(value, str) else dict(value)
    return parsed


async def sync_policy(request: Request, name: str, environment: Mapping[str, str]) -> None:
    """Rewrite ``dormant-fn-{name}`` for ``environment`` when a secrets store is configured (called
    when the function's environment changes, so the shared names it references become readable)."""
    try:
        config = SecretsConfig.from_env()
    except ValueError as exc:
        raise HttpError(503, "SecretsNotConfigured", str(exc)) from None
    if config.provider != "openbao" or not config.token:
        return
    try:
        await asyncio.to_thread(_admin(request).write_policy, name, environment)
    except SecretsError as exc:
        raise _store_error(exc) from None


async def function_secrets(request: Request) -> Response:
    if request.method == "GET":
        return await list_secrets(request)
    return await put_secrets(request)


async def put_secrets(request: Request) -> Response:
    principal = await authorize(request, Action.SET_SECRETS, limit="manage")
    name = service_name(request)
    secrets = _parse(await json_object(request))
    record = await state(request).db.run(function_sql.get_function, name)
    if record is None:
        raise NotFound(f"no function {name!r}")
    admin = _admin(request)
    written: list[dict[str, Any]] = []
    try:
        for secret, value in sorted(secrets.items()):
            version = await asyncio.to_thread(admin.set_secret, name, secret, value)
            written.append({"name": secret, "version": version})
        await asyncio.to_thread(admin.write_policy, name, record.environment)
    except SecretsError as exc:
        raise _store_error(exc) from None
    await state(request).db.run(
        record_audit,
        actor=principal.sub,
        app_name=name,
        action="set-secrets",
        detail={"names": [item["name"] for item in written]},
    )
    return json_response({"function": name, "secrets": written})


async def list_secrets(request: Request) -> Response:
    await authorize(request, Action.READ)
    name = service_name(request)
    try:
        found = await asyncio.to_thread(_admin(request).list_secrets, name)
    except SecretsError as exc:
        raise _store_error(exc) from None
    return json_response(
        {
            "function": name,
            "secrets": [{"name": s.name, "version": s.version, "fields": list(s.fields)} for s in found],
        }
    )
