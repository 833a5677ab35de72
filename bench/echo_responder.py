"""Reference 1: a bare aiomqtt MQTT 5 echo responder (QoS 1 in and out, correlation echoed)."""

from __future__ import annotations

import asyncio
import socket
import sys

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


async def main(host: str, port: int, topic: str) -> None:
    async with aiomqtt.Client(
        host, port, protocol=aiomqtt.ProtocolVersion.V5,
        socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
    ) as client:  # fmt: skip
        await client.subscribe(topic, qos=1)
        print("ready", flush=True)
        async for message in client.messages:
            props = message.properties
            reply = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            reply.CorrelationData = props.CorrelationData  # type: ignore[union-attr]
            await client.publish(props.ResponseTopic, message.payload, qos=1, properties=reply)  # type: ignore[union-attr]


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
