"""Both transports behind the MQTT seam, on a real broker: properties survive a round trip, and only
the native one reports "no matching subscribers" (aiomqtt hides the PUBACK reason code)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dormant.transport import NO_MATCHING_SUBSCRIBERS, AiomqttTransport, Message, NativeTransport
from dormant_local import MosquittoProcess

TRANSPORTS = {"native": NativeTransport, "aiomqtt": AiomqttTransport}


@pytest.mark.parametrize("kind", sorted(TRANSPORTS))
async def test_a_request_round_trips_with_its_properties(broker: MosquittoProcess, kind: str) -> None:
    topic = f"t/{uuid.uuid4().hex[:8]}"
    async with TRANSPORTS[kind](broker.url) as receiver, TRANSPORTS[kind](broker.url) as sender:
        await receiver.subscribe([topic], qos=1)
        reason = await sender.publish(
            Message(
                topic,
                b'{"a": 1}',
                response_topic="reply/x",
                correlation=b"\x00\x01call",
                user_properties=[("deadline", "123"), ("k", "v")],
                expiry_s=30,
            )
        )
        assert reason == 0
        message = await asyncio.wait_for(anext(aiter(receiver.messages())), 5)
    assert message.topic == topic and message.payload == b'{"a": 1}'
    assert message.response_topic == "reply/x" and message.correlation == b"\x00\x01call"
    assert list(message.user_properties) == [("deadline", "123"), ("k", "v")]
    assert message.expiry_s is not None and 0 < message.expiry_s <= 30


async def test_only_the_native_transport_reports_no_subscribers(broker: MosquittoProcess) -> None:
    topic = f"nobody/{uuid.uuid4().hex[:8]}"
    async with NativeTransport(broker.url) as native, AiomqttTransport(broker.url) as paho:
        assert await native.publish(Message(topic, b"x")) == NO_MATCHING_SUBSCRIBERS
        assert await paho.publish(Message(topic, b"x")) == 0
