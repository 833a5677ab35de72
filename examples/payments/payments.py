"""Payments: a charge recorded exactly once per callId, in the same transaction as its answer.

``charge`` inserts a document into the DataStore's ``charges`` collection (``ctx.data``): the runtime
commits it together with the call's stored answer, and only while it still owns the call, so a retry
with the same callId (a client's, or a crashed runtime's call run again) never charges twice.
"""

from __future__ import annotations

from dormant import Context, function, service

from generated.models import ChargeRequest, Receipt


@service("payments")
class Payments:
    @function("charge", timeout=10)
    async def charge(self, request: ChargeRequest, ctx: Context) -> Receipt:
        charge_id = await ctx.data.insert(
            "charges", {"order": request.order, "cents": request.cents, "callId": ctx.call_id}
        )
        ctx.logger.info("charged %s cents for order %s", request.cents, request.order)
        return Receipt(chargeId=charge_id, order=request.order, cents=request.cents)
