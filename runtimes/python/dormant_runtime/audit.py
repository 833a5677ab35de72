"""What a runtime reports to the audit log (``dormant_catalog.audit``): each call it ran (an
``execution``: callId, function, version, caller, outcome, duration), each call it refused for its
caller (``authorization``: no valid token, a role missing) and what looks like misuse (``security``: a
callId reused with another input or by another caller, this runtime's session taken over).

Entries are buffered and written in batches by ``AuditTrail``, off the call's path. An entry holds
names, ids and error types, never a call's input, output or token.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from dormant import errors, wire
from dormant_catalog.audit import AuditEvent
from dormant_catalog.audit_trail import AuditTrail

from .stats import started_at

ANONYMOUS_ACTOR = "anonymous"


class CallAudit:
    def __init__(self, trail: AuditTrail, *, service: str, version: int, client_id: str) -> None:
        self.trail = trail
        self.service = service
        self.version = version
        self.client_id = client_id

    def executed(self, call: wire.Call, caller: str | None, ok: bool, error_type: str | None) -> None:
        """A call this runtime ran and answered."""
        if not self.trail.records_execution(ok):
            return
        started = started_at()
        duration_ms = None if started is None else round((time.monotonic() - started) * 1000, 3)
        detail: dict[str, object] = {
            "callId": call.call_id,
            "function": call.function,
            "version": self.version,
            "ok": ok,
            "durationMs": duration_ms,
        }
        if error_type is not None:
            detail["error"] = error_type
        self.trail.add(
            AuditEvent("execution", caller or ANONYMOUS_ACTOR, self.service, "call", detail)
        )

    def refused(self, call: wire.Call, refusal: errors.DormantError, caller: str | None = None) -> None:
        """A call refused before it ran because of who called (``Unauthenticated``, ``Forbidden``)."""
        detail = {
            "callId": call.call_id,
            "function": call.function,
            "version": self.version,
            "error": refusal.type,
            "reason": str(refusal),
        }
        self.trail.add(
            AuditEvent("authorization", caller or ANONYMOUS_ACTOR, self.service, "refused", detail)
        )

    def security(self, action: str, caller: str | None, detail: Mapping[str, object]) -> None:
        """Something that looks like misuse or an attack."""
        full = {"version": self.version, "runtime": self.client_id, **detail}
        self.trail.add(AuditEvent("security", caller or ANONYMOUS_ACTOR, self.service, action, full))
