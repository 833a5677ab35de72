"""The private Mosquitto broker: real MQTT 5 traffic, restarts on one port, crashes, persistence, ACLs."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from dormant_local import MosquittoProcess, port_accepts


def client(
    broker: MosquittoProcess, *, identifier: str | None = None, clean_start: bool = True
) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.port,
        identifier=identifier or f"t-{uuid.uuid4().hex[:12]}",
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=clean_start,
        properties=_session_expiry(3600) if not clean_start else None,
    )


def _session_expiry(seconds: int) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = seconds
    return props


async def _next_message(sub: aiomqtt.Client, within: float = 5.0) -> aiomqtt.Message:
    async with asyncio.timeout(within):
        async for message in sub.messages:
            return message
    raise AssertionError("no message")


async def test_publish_subscribe_mqtt5(broker: MosquittoProcess) -> None:
    assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
    topic = f"service/echo-{uuid.uuid4().hex[:6]}/hello"
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.ResponseTopic = "reply/me/1"
    props.CorrelationData = b"0123456789abcdef"
    props.UserProperty = [("status", "ok")]
    async with client(broker) as sub, client(broker) as pub:
        await sub.subscribe(topic, qos=1)
        await pub.publish(topic, b'{"name": "x"}', qos=1, properties=props)
        message = await _next_message(sub)
    assert message.payload == b'{"name": "x"}'
    assert message.properties is not None
    received = message.properties
    assert getattr(received, "ResponseTopic") == "reply/me/1"  # noqa: B009 - paho sets these dynamically
    assert getattr(received, "CorrelationData") == b"0123456789abcdef"  # noqa: B009
    assert ("status", "ok") in getattr(received, "UserProperty")  # noqa: B009


async def test_large_payload_passes_the_broker(broker: MosquittoProcess) -> None:
    topic = f"big/{uuid.uuid4().hex[:6]}"
    payload = b"x" * (7 * 1024 * 1024)
    async with client(broker) as sub, client(broker) as pub:
        await sub.subscribe(topic, qos=1)
        await pub.publish(topic, payload, qos=1)
        message = await _next_message(sub, within=20)
    assert message.payload == payload


async def test_restart_keeps_port_and_persistent_sessions(fresh_broker: MosquittoProcess) -> None:
    port = fresh_broker.port
    topic = f"service/persist-{uuid.uuid4().hex[:6]}/fn"
    identifier = f"persistent-{uuid.uuid4().hex[:8]}"
    async with client(fresh_broker, identifier=identifier, clean_start=False) as sub:
        await sub.subscribe(topic, qos=1)
    async with client(fresh_broker) as pub:
        await pub.publish(topic, b"queued while offline", qos=1)

    await fresh_broker.restart()
    assert fresh_broker.port == port
    assert port_accepts(port)

    async with client(fresh_broker, identifier=identifier, clean_start=False) as sub:
        message = await _next_message(sub)
    assert message.payload == b"queued while offline"


async def test_kill_then_start(fresh_broker: MosquittoProcess) -> None:
    port = fresh_broker.port
    fresh_broker.kill()
    assert not fresh_broker.running
    assert not port_accepts(port)
    await fresh_broker.start()
    assert fresh_broker.port == port
    async with client(fresh_broker) as sub, client(fresh_broker) as pub:
        await sub.subscribe("after/kill", qos=1)
        await pub.publish("after/kill", b"alive", qos=1)
        assert (await _next_message(sub)).payload == b"alive"


async def test_acl_file_is_enforced(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite open/#\n", encoding="utf-8")
    async with MosquittoProcess(data_dir=tmp_path / "broker", acl_file=acl) as broker:
        async with client(broker) as sub, client(broker) as pub:
            await sub.subscribe("closed/#", qos=1)
            await sub.subscribe("open/#", qos=1)
            await pub.publish("closed/x", b"denied", qos=1)
            await pub.publish("open/x", b"allowed", qos=1)
            assert (await _next_message(sub)).payload == b"allowed"
    assert not broker.running
