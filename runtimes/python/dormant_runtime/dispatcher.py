"""Dispatching one decoded call: the SDK's in-process dispatcher (``dormant._dispatch``), fed by the wire.

Validation, the handler's timeout and the caller's deadline, output JSON and error mapping live in the
SDK, so ``dormant.testing.TestClient`` runs a handler exactly as a pod does; this module adapts a
decoded ``dormant.wire.Call`` to it.

``run`` returns an ``Outcome``: ``(ok, body)`` for the wire plus the transaction the handler opened
with ``ctx.transaction()``, still open, for the caller to commit with the call's result. ``dispatch``
is ``run`` that commits (on success) or rolls back itself. Neither raises: unexpected handler
exceptions are logged with the callId and become ``SystemError`` without a traceback for the caller.
"""

from __future__ import annotations

from typing import Any

from dormant import errors
from dormant._dispatch import MAX_REPORTED_ERRORS, Outcome, Transactions, UncheckedFormat, output_json
from dormant._dispatch import Dispatcher as _InProcess
from dormant.context import ANONYMOUS, UserContext
from dormant.wire import Call

from .limits import peak_rss_mb

__all__ = ["MAX_REPORTED_ERRORS", "Dispatcher", "Outcome", "Transactions", "UncheckedFormat", "output_json"]


class Dispatcher(_InProcess):
    """Runs decoded calls against one loaded service."""

    memory_limit_mb: int | None = None
    """The function's memory limit (``limits.py``), named in the error of a call that went past it."""
    out_of_memory = False
    """Set once a call went past the memory limit: the process must end after answering it."""

    async def run(self, call: Call, user: UserContext = ANONYMOUS) -> Outcome:
        """Run the call for ``user`` (verified by ``dormant_runtime.authn``); a transaction the handler
        opened is left open on the outcome."""
        outcome = await self.run_call(
            call.function,
            call.params,
            call_id=call.call_id,
            deadline=call.deadline,
            headers=call.headers,
            user=user,
        )
        if isinstance(outcome.cause, MemoryError):
            self.out_of_memory = True
            failed = errors.SystemError(
                f"{call.function} went past its memory limit"
                + (f" of {self.memory_limit_mb} MB" if self.memory_limit_mb else ""),
                {"callId": call.call_id, "memoryLimitMb": self.memory_limit_mb, "peakRssMb": peak_rss_mb()},
            )
            return Outcome(False, failed.to_payload(), outcome.tx, outcome.cause)
        return outcome

    async def dispatch(self, call: Call, user: UserContext = ANONYMOUS) -> tuple[bool, Any]:
        """Run the call and finish its transaction, if any: committed on success, rolled back on error."""
        outcome = await self.end_call(
            await self.run(call, user), function=call.function, call_id=call.call_id
        )
        return outcome.ok, outcome.body
