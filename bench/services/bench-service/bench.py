"""The function every responder in the benchmark implements: echo a short text back."""

from __future__ import annotations

from dormant import Context, function, service

from generated.models import EchoRequest, EchoResponse

RELEASE = "a"


@service("bench-service", auth="off")
class BenchService:
    @function("echo", timeout=10)
    async def echo(self, request: EchoRequest, ctx: Context) -> EchoResponse:
        return EchoResponse(text=request.text)
