"""Running one call against a loaded service, in process: the part of a runtime that does no I/O.

``Dispatcher.run_call`` validates the input against the function's JSON schema, builds its input
model, runs the handler under its timeout (and the caller's deadline) with a ``Context``, turns the
output into JSON and validates it, and maps every failure to a typed error. It returns an
``Outcome``: ``ok`` and the JSON ``body`` for the wire, plus the transaction the handler opened with
``ctx.transaction()``, still open, for the caller to commit together with the call's result.
``end_call`` commits it (on success) or rolls it back. Neither raises: an unexpected handler exception
is logged with the callId and becomes a ``SystemError`` without internals for the caller (the
exception itself stays on ``Outcome.cause`` for in-process callers such as ``dormant.testing``).

Who may call is checked first, from the caller's ``UserContext`` (verified from a token by the runtime
before it gets here): a service whose authentication is ``required`` refuses an anonymous caller
(``Unauthenticated``); a function that lists ``roles`` refuses a caller holding none of them
(``Forbidden``, or ``Unauthenticated`` when anonymous). The handler does not run then.

The runtime (``dormant_runtime.dispatcher``) and ``dormant.testing.TestClient`` both run calls through
this module, so a handler behaves the same in a unit test as in a pod.

Schemas are checked with every ``format`` asserted (``dormant._formats``): a service whose schemas use a
format that cannot be checked fails to load (``UncheckedFormat``). Input models are built from the JSON
names (aliases) only. An output model becomes JSON by ``output_json``: what the handler set is kept, an
explicit ``None`` included, so null round-trips where the schema allows it. A body that is not a model
is taken through JSON (``orjson``) before its schema check, so what is checked is what goes on the wire.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import pydantic
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from . import _injection, _tracing, errors
from ._formats import CHECKED_FORMATS, format_checker, formats_used
from ._modeljson import model_json
from .app import FunctionSpec, ServiceSpec
from .context import ANONYMOUS, NO_CONFIG, Context, Platform, TransactionSource, UserContext

log = logging.getLogger("dormant.dispatch")

MAX_REPORTED_ERRORS = 20
MAX_NULL_PRUNING_ROUNDS = 8


class UncheckedFormat(ValueError):
    """A schema uses a ``format`` that cannot be checked; the service is not loaded."""


def compile_schema(schema: dict[str, Any], where: str) -> Validator:
    """A validator for ``schema`` that asserts every ``format``; ``where`` names the schema in errors."""
    unchecked = sorted(formats_used(schema) - CHECKED_FORMATS)
    if unchecked:
        raise UncheckedFormat(f"{where} uses formats this runtime cannot check: {', '.join(unchecked)}")
    cls = validator_for(schema, default=Draft202012Validator)
    validator: Validator = cls(schema, format_checker=format_checker())
    return validator


def output_json(model: pydantic.BaseModel, validator: Validator) -> Any:
    """The JSON form of an output model, exactly what the handler set.

    A field the handler set is kept, ``None`` included (JSON ``null``); a field left at a ``None``
    default is left out (absent). A ``None`` where the schema does not allow ``null`` can only mean
    "absent" (generated models give every optional property a ``None`` default), so it is dropped.
    Everything else is as the model dumps it (by alias), and the schema check follows.
    """
    body = model_json(model)
    if not _has_null(body):
        return body
    for _ in range(MAX_NULL_PRUNING_ROUNDS):
        refused = _refused_nulls(validator, body)
        if not refused:
            break
        for path in refused:
            _delete(body, path)
    return body


def _has_null(body: Any) -> bool:
    if body is None:
        return True
    if isinstance(body, dict):
        return any(_has_null(v) for v in body.values())
    if isinstance(body, list):
        return any(_has_null(v) for v in body)
    return False


def _refused_nulls(validator: Validator, body: Any) -> list[tuple[str | int, ...]]:
    """Paths of object members that are ``null`` where the schema refuses ``null``."""
    found: set[tuple[str | int, ...]] = set()
    todo = list(validator.iter_errors(body))
    while todo:
        error = todo.pop()
        path = tuple(error.absolute_path)
        if error.instance is None and path and isinstance(path[-1], str):
            found.add(path)
        todo.extend(error.context or ())
    return sorted(found, key=len, reverse=True)


def _delete(body: Any, path: tuple[str | int, ...]) -> None:
    node = body
    for part in path[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return
    if isinstance(node, dict) and node.get(path[-1], 0) is None:
        del node[path[-1]]


def schema_errors(validator: Validator, instance: Any) -> list[dict[str, str]]:
    """Up to ``MAX_REPORTED_ERRORS`` problems of ``instance``, each ``{"path", "message"}``, sorted."""
    found = []
    for error in validator.iter_errors(instance):
        path = "/".join(str(p) for p in error.absolute_path)
        found.append({"path": path, "message": error.message})
        if len(found) >= MAX_REPORTED_ERRORS:
            break
    return sorted(found, key=lambda e: (e["path"], e["message"]))


@dataclass(slots=True)
class Outcome:
    """What one call produced: the wire answer, the handler's open transaction, and why it failed."""

    ok: bool
    body: Any
    """The result (``ok``) or the error payload ``{"type", "message", "details"}``; always JSON-able."""
    tx: Any = None
    """The handler's open transaction (a psycopg connection), or None if it opened none."""
    cause: BaseException | None = field(default=None, repr=False)
    """The exception behind an error answer (never sent): the handler's own, or the typed error raised."""

    @property
    def error_type(self) -> str | None:
        return None if self.ok else str(self.body.get("type"))


class Transactions(TransactionSource, Protocol):
    """A ``TransactionSource`` that can also finish what it began."""

    async def end(self, conn: Any, *, commit: bool) -> None: ...


@dataclass(slots=True)
class _Compiled:
    spec: FunctionSpec
    input_validator: Validator
    output_validator: Validator


class Dispatcher:
    """Runs calls against one loaded service.

    ``handler`` is the instance whose methods serve the calls; by default a new ``handler_class()``,
    as a runtime makes it. Compiling the schemas happens here, so a service whose schemas cannot be
    checked fails when it is loaded, not on its first call.
    """

    def __init__(
        self,
        service: ServiceSpec,
        version: int | None = None,
        transactions: Transactions | None = None,
        *,
        handler: Any = None,
        platform: Platform | None = None,
    ) -> None:
        self.service = service
        self.version = version
        self.transactions = transactions
        self.platform = platform
        """Gives handlers ``ctx.data``, ``ctx.authorizer``, ``ctx.messaging`` (and injected ones)."""
        self.config: Mapping[str, Any] = NO_CONFIG
        """The live configuration handed to each call as ``ctx.config``: replaced whole (a read-only
        mapping) when a new revision arrives, so a call keeps the one it started with."""
        self.handler = _injection.construct(service.handler_class) if handler is None else handler
        self._functions = {
            name: _Compiled(
                spec,
                compile_schema(spec.input_schema, f"the input schema of {name}"),
                compile_schema(spec.output_schema, f"the output schema of {name}"),
            )
            for name, spec in service.functions.items()
        }

    async def run_call(
        self,
        function: str,
        params: Any,
        *,
        call_id: str,
        deadline: float | None = None,
        headers: Mapping[str, str] | None = None,
        user: UserContext = ANONYMOUS,
    ) -> Outcome:
        """Run one call; its transaction, if the handler opened one, is left open on the outcome."""
        if self.service.auth == "off":
            user = ANONYMOUS  # a service that never reads tokens has only anonymous callers
        ctx = Context(
            call_id=call_id,
            service=self.service.name,
            function=function,
            version=self.version,
            deadline=deadline,
            user=user,
            headers=dict(headers or {}),
            config=self.config,
            _transactions=self.transactions,
            _platform=self.platform,
        )
        # The calls the handler makes carry this call's trace (as children of its function.execute span).
        traced = _tracing.enter_handler(ctx.headers)
        try:
            return Outcome(True, await self._run(function, params, ctx), ctx._tx)
        except errors.DormantError as exc:
            return Outcome(False, _error_payload(exc, call_id), ctx._tx, exc)
        except Exception as exc:
            log.exception("[%s] %s.%s failed", call_id, self.service.name, function)
            _tracing.handler_failed(exc)
            body = errors.SystemError(f"{function} failed with an internal error", {"callId": call_id})
            return Outcome(False, body.to_payload(), ctx._tx, exc)
        finally:
            _tracing.leave_handler(traced)

    async def end_call(self, outcome: Outcome, *, function: str, call_id: str) -> Outcome:
        """Finish the outcome's transaction, if any: committed on success, rolled back on error.

        Returns the outcome with no transaction; a commit that fails turns it into a ``SystemError``.
        """
        if outcome.tx is None or self.transactions is None:
            return outcome
        try:
            await self.transactions.end(outcome.tx, commit=outcome.ok)
        except Exception as exc:
            log.exception("[%s] committing the handler's transaction failed", call_id)
            failed = errors.SystemError(f"{function} could not commit its writes", {"callId": call_id})
            return Outcome(False, failed.to_payload(), None, exc)
        return Outcome(outcome.ok, outcome.body, None, outcome.cause)

    def admit(self, function: str, user: UserContext) -> None:
        """Raise ``Unauthenticated``, ``NotFound`` or ``Forbidden`` unless ``user`` may call ``function``.

        Authentication comes before the function lookup, so an anonymous caller of a service that
        requires a token learns nothing of its functions."""
        if user.anonymous and self.service.auth == "required":
            raise errors.Unauthenticated(f"{self.service.name} needs a bearer token on every call")
        compiled = self._functions.get(function)
        if compiled is None:
            raise errors.NotFound(
                f"{self.service.name} has no function {function!r}", {"functions": sorted(self._functions)}
            )
        needed = compiled.spec.roles
        if needed and not any(role in user.roles for role in needed):
            if user.anonymous:
                raise errors.Unauthenticated(f"{function} needs a bearer token with one of its roles")
            raise errors.Forbidden(
                f"{function} needs one of the roles {', '.join(needed)}", {"roles": list(needed)}
            )

    async def _run(self, function: str, params: Any, ctx: Context) -> Any:
        self.admit(function, ctx.user)
        compiled = self._functions[function]
        spec = compiled.spec
        problems = schema_errors(compiled.input_validator, params)
        if problems:
            summary = "; ".join(f"{p['path'] or '(input)'}: {p['message']}" for p in problems[:3])
            raise errors.ValidationError(f"invalid input for {function}: {summary}", {"errors": problems})
        try:
            # JSON names only: with populate_by_name, a Python name in the input ("class_" for "class")
            # would otherwise fill a field the schema saw as an unknown property.
            request = spec.input_model.model_validate(params, by_alias=True, by_name=False)
        except pydantic.ValidationError as exc:
            raise errors.ValidationError(
                f"invalid input for {function}: {exc.errors()[0].get('msg', 'invalid')}",
                {"errors": [_pydantic_error(e) for e in exc.errors()[:MAX_REPORTED_ERRORS]]},
            ) from None
        budget = spec.timeout
        if ctx.deadline is not None:
            left = ctx.deadline - time.time()
            if left <= 0:
                raise errors.TimeoutError(f"the deadline of {function} passed before it started")
            budget = min(budget, left)
        method = getattr(self.handler, spec.method)
        current = _injection.enter(ctx)  # what injected interfaces resolve to
        try:
            async with asyncio.timeout(budget):
                result = await method(request, ctx)
        except TimeoutError:
            raise errors.TimeoutError(
                f"{function} did not finish within {budget:.3g}s", {"timeout": round(budget, 3)}
            ) from None
        finally:
            _injection.leave(current)
        return self._output(compiled, result)

    def _output(self, compiled: _Compiled, result: Any) -> Any:
        name = compiled.spec.name
        if isinstance(result, pydantic.BaseModel):
            body = output_json(result, compiled.output_validator)
        else:
            try:
                body = orjson.loads(orjson.dumps(result))
            except (TypeError, ValueError) as exc:
                log.error("%s returned output that is not JSON: %s", name, exc)
                raise errors.SystemError(f"{name} returned output that is not JSON") from exc
        problems = schema_errors(compiled.output_validator, body)
        if problems:
            log.error("%s returned output that breaks its schema: %s", name, problems)
            raise errors.SystemError(f"{name} returned output that breaks its schema")
        return body


def _error_payload(exc: errors.DormantError, call_id: str) -> dict[str, Any]:
    """The wire form of a typed error a handler raised; details that are not JSON are left out."""
    payload = exc.to_payload()
    try:
        orjson.dumps(payload)
    except TypeError:
        log.error("[%s] %s raised with details that are not JSON: %r", call_id, exc.type, exc.details)
        payload["details"] = None
    return payload


def _pydantic_error(error: Any) -> dict[str, str]:
    return {"path": "/".join(str(p) for p in error.get("loc", ())), "message": str(error.get("msg"))}
