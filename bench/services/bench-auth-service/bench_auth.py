"""The benchmark's function with authentication on: bench-service's echo, every call's bearer token
verified (``auth="required"``) before the handler runs."""

from __future__ import annotations

from dormant import Context, function, service

from generated.models import EchoRequest, EchoResponse


@service("bench-auth-service", auth="required")
class BenchAuthService:
    @function("echo", timeout=10)
    async def echo(self, request: EchoRequest, ctx: Context) -> EchoResponse:
        return EchoResponse(text=request.text)
