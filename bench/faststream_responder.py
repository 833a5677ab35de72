"""Reference 2: the peer a user would pick instead, a FastStream MQTT responder for the same function."""

from __future__ import annotations

import asyncio
import logging
import sys

from faststream import FastStream
from faststream.mqtt import MQTTBroker
from pydantic import BaseModel, Field


class EchoRequest(BaseModel):
    text: str = Field(max_length=100)


class EchoResponse(BaseModel):
    text: str


def build(url: str, topic: str) -> FastStream:
    # Per-message logging off, as a user would run it in production (it costs FastStream a third of
    # its throughput here); Dormant's runtime does not log successful calls either.
    broker = MQTTBroker(url, log_level=logging.DEBUG)

    @broker.subscriber(topic, qos=1)
    async def echo(request: EchoRequest) -> EchoResponse:
        return EchoResponse(text=request.text)

    app = FastStream(broker)

    @app.after_startup
    async def ready() -> None:
        print("ready", flush=True)

    return app


if __name__ == "__main__":
    asyncio.run(build(sys.argv[1], sys.argv[2]).run())
