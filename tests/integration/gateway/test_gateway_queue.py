"""Queue triggers on a private RabbitMQ node: 1,000 messages, 5 % failing permanently; every good one
processed exactly once, every bad one in the dead-letter queue, per-trigger metrics."""

from __future__ import annotations

import asyncio
import uuid

import aio_pika
import httpx
from gw_helpers import new_gateway, wait_for

from dormant_local import RabbitNode

API = "/api/v1"
TOTAL = 1000


async def test_thousand_messages_with_five_percent_failing(
    gw_mesh: object, gw_tmp: object, rabbitmq: RabbitNode
) -> None:
    process = new_gateway(gw_mesh, gw_tmp, "gw-queue", DORMANT_RABBITMQ_URL=rabbitmq.url)  # type: ignore[arg-type]
    run = uuid.uuid4().hex[:8]
    queue_name = f"orders-{run}"
    bad = {i for i in range(TOTAL) if i % 20 == 7}
    try:
        await process.start()
        connection = await aio_pika.connect_robust(rabbitmq.url)
        async with (
            connection,
            httpx.AsyncClient(base_url=process.url, headers=process.headers("developer")) as http,
        ):
            channel = await connection.channel()
            await channel.declare_queue(queue_name, durable=True)
            dlq = await channel.declare_queue(f"{queue_name}.dlq", durable=True)
            for index in range(TOTAL):
                body = {"key": f"{run}-{index}", **({"fail": 1000} if index in bad else {})}
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        body=httpx.Request("POST", "/", json=body).content, message_id=f"m-{index}"
                    ),
                    routing_key=queue_name,
                )
            created = await http.post(
                f"{API}/functions/probe-service/triggers",
                json={
                    "type": "queue",
                    "function": "count",
                    "config": {
                        "queue": queue_name,
                        "batchSize": 100,
                        "maxAttempts": 3,
                        "backoffSeconds": 0.01,
                    },
                },
            )
            assert created.status_code == 201, created.text
            trigger_id = created.json()["id"]

            async def all_done() -> bool:
                trigger = (await http.get(f"{API}/functions/probe-service/triggers/{trigger_id}")).json()
                return trigger["metrics"]["fired"] >= TOTAL

            await wait_for(all_done, timeout=90, interval=0.5)
            metrics = (await http.get(f"{API}/functions/probe-service/triggers/{trigger_id}")).json()[
                "metrics"
            ]
            assert metrics["fired"] == TOTAL
            assert metrics["succeeded"] == TOTAL - len(bad)
            assert metrics["deadLettered"] == len(bad)
            assert metrics["retried"] == 2 * len(bad)

            dead: list[str] = []
            while True:
                message = await dlq.get(no_ack=True, fail=False)
                if message is None:
                    break
                dead.append(message.message_id or "")
                assert message.headers["x-dormant-error-type"] == "SystemError"
            assert sorted(dead) == sorted(f"m-{i}" for i in bad)

            async def counts() -> list[int]:
                results = []
                for index in range(0, TOTAL):
                    if index in bad:
                        continue
                    response = await http.post(
                        f"{API}/functions/probe-service.count/invoke",
                        json={"key": f"{run}-{index}", "peek": True},
                    )
                    results.append(response.json()["count"])
                return results

            assert set(await counts()) == {1}  # every good message ran the handler exactly once
            source = await channel.declare_queue(queue_name, durable=True, passive=True)
            assert source.declaration_result.message_count == 0
            await asyncio.sleep(0)
    finally:
        process.stop()
