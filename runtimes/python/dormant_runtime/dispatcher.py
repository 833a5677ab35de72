"""Dispatching one decoded call: validate input, run the handler under its timeout, validate output.

``run`` returns an ``Outcome``: ``(ok, body)`` for the wire plus the transaction the handler opened
with ``ctx.transaction()``, still open, for the caller to commit with the call's result. ``dispatch``
is ``run`` that commits (on success) or rolls back itself. Neither raises: unexpected handler
exceptions are logged with the callId and become ``SystemError`` without a traceback for the caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol

import pydantic
from jsonschema import Draft202012Validator
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for

from dormant import errors
from dormant.app import FunctionSpec, ServiceSpec
from dormant.context import Context, TransactionSource
from dormant.wire import Call

log = logging.getLogger("dormant.runtime")

MAX_REPORTED_ERRORS = 20


def _compile(schema: dict[str, Any]) -> Validator:
    cls = validator_for(schema, default=Draft202012Validator)
    validator: Validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    return validator


def _schema_errors(validator: Validator, instance: Any) -> list[dict[str, str]]:
    found = []
    for error in validator.iter_errors(instance):
        path = "/".join(str(p) for p in error.absolute_path)
        found.append({"path": path, "message": error.message})
        if len(found) >= MAX_REPORTED_ERRORS:
            break
    return sorted(found, key=lambda e: (e["path"], e["message"]))


@dataclass(slots=True)
class Outcome:
    ok: bool
    body: Any
    tx: Any = None
    """The handler's open transaction (a psycopg connection), or None if it opened none."""

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
    """Runs calls against one loaded service."""

    def __init__(
        self, service: ServiceSpec, version: int | None = None, transactions: Transactions | None = None
    ) -> None:
        self.service = service
        self.version = version
        self.transactions = transactions
        self.handler = service.handler_class()
        self._functions = {
            name: _Compiled(spec, _compile(spec.input_schema), _compile(spec.output_schema))
            for name, spec in service.functions.items()
        }

    async def dispatch(self, call: Call) -> tuple[bool, Any]:
        """Run the call and finish its transaction, if any: committed on success, rolled back on error."""
        outcome = await self.run(call)
        if outcome.tx is not None and self.transactions is not None:
            try:
                await self.transactions.end(outcome.tx, commit=outcome.ok)
            except Exception:
                log.exception("[%s] committing the handler's transaction failed", call.call_id)
                return False, errors.SystemError(
                    f"{call.function} could not commit its writes", {"callId": call.call_id}
                ).to_payload()
        return outcome.ok, outcome.body

    async def run(self, call: Call) -> Outcome:
        ctx = Context(
            call_id=call.call_id,
            service=self.service.name,
            function=call.function,
            version=self.version,
            deadline=call.deadline,
            headers=call.headers,
            _transactions=self.transactions,
        )
        try:
            return Outcome(True, await self._run(call, ctx), ctx._tx)
        except errors.DormantError as exc:
            return Outcome(False, exc.to_payload(), ctx._tx)
        except Exception:
            log.exception("[%s] %s.%s failed", call.call_id, self.service.name, call.function)
            body = errors.SystemError(
                f"{call.function} failed with an internal error", {"callId": call.call_id}
            )
            return Outcome(False, body.to_payload(), ctx._tx)

    async def _run(self, call: Call, ctx: Context) -> Any:
        compiled = self._functions.get(call.function)
        if compiled is None:
            raise errors.NotFound(
                f"{self.service.name} has no function {call.function!r}",
                {"functions": sorted(self._functions)},
            )
        spec = compiled.spec
        problems = _schema_errors(compiled.input_validator, call.params)
        if problems:
            summary = "; ".join(f"{p['path'] or '(input)'}: {p['message']}" for p in problems[:3])
            raise errors.ValidationError(
                f"invalid input for {call.function}: {summary}", {"errors": problems}
            )
        try:
            request = spec.input_model.model_validate(call.params)
        except pydantic.ValidationError as exc:
            raise errors.ValidationError(
                f"invalid input for {call.function}: {exc.errors()[0].get('msg', 'invalid')}",
                {"errors": [_pydantic_error(e) for e in exc.errors()[:MAX_REPORTED_ERRORS]]},
            ) from None
        budget = spec.timeout
        if call.deadline is not None:
            left = call.deadline - time.time()
            if left <= 0:
                raise errors.TimeoutError(f"the deadline of {call.function} passed before it started")
            budget = min(budget, left)
        method = getattr(self.handler, spec.method)
        try:
            async with asyncio.timeout(budget):
                result = await method(request, ctx)
        except TimeoutError:
            raise errors.TimeoutError(
                f"{call.function} did not finish within {budget:.3g}s", {"timeout": round(budget, 3)}
            ) from None
        return self._output(compiled, result)

    def _output(self, compiled: _Compiled, result: Any) -> Any:
        if isinstance(result, pydantic.BaseModel):
            body = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        else:
            body = result
        problems = _schema_errors(compiled.output_validator, body)
        if problems:
            log.error("%s returned output that breaks its schema: %s", compiled.spec.name, problems)
            raise errors.SystemError(f"{compiled.spec.name} returned output that breaks its schema")
        return body


def _pydantic_error(error: Any) -> dict[str, str]:
    return {"path": "/".join(str(p) for p in error.get("loc", ())), "message": str(error.get("msg"))}
