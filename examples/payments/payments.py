"""Payments: a charge recorded exactly once per callId, in the same transaction as its answer.

``charge`` inserts a row into the ``charges`` table (``schema.sql``) through ``ctx.transaction()``: the
runtime commits it together with the call's stored answer, and only while it still owns the call, so a
retry with the same callId (a client's, or a crashed runtime's call run again) never charges twice.
"""

from __future__ import annotations

from dormant import Context, function, service

from generated.models import ChargeRequest, Receipt


@service("payments")
class Payments:
    @function("charge", timeout=10)
    async def charge(self, request: ChargeRequest, ctx: Context) -> Receipt:
        tx = await ctx.transaction()
        cursor = await tx.execute(
            "INSERT INTO charges (order_id, cents, call_id) VALUES (%s, %s, %s) RETURNING charge_id",
            (request.order, request.cents, ctx.call_id),
        )
        row = await cursor.fetchone()
        ctx.logger.info("charged %s cents for order %s", request.cents, request.order)
        return Receipt(chargeId=row[0], order=request.order, cents=request.cents)
