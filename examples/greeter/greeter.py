"""Greeter: a greeting by name, over MQTT (``greet``) or over HTTP through a gateway HTTP trigger
(``httpGreet``, which takes the trigger's event and answers ``{statusCode, headers, body}``)."""

from __future__ import annotations

from dormant import Context, function, service

from generated.models import Greeting, GreetRequest, HttpEvent, HttpResponse


@service("greeter")
class Greeter:
    @function("greet", timeout=5)
    async def greet(self, request: GreetRequest, ctx: Context) -> Greeting:
        return Greeting(text=f"Hello, {request.name}!")

    @function("httpGreet", timeout=5)
    async def http_greet(self, request: HttpEvent, ctx: Context) -> HttpResponse:
        params = {**(request.queryStringParameters or {}), **(request.pathParameters or {})}
        name = params.get("name") or "world"
        ctx.logger.info("%s %s", request.httpMethod, request.path)
        return HttpResponse(
            statusCode=200, headers={"content-type": "text/plain; charset=utf-8"}, body=f"Hello, {name}!\n"
        )
