"""Calls the gateway makes on its own carry an identity a runtime verifies.

A copy of the probe service with ``auth="required"`` and a ``whoami`` function (it answers the verified
caller's subject, and the non-authoritative ``x-dormant-trigger-owner`` / ``x-dormant-on-behalf-of``
headers) shows who each call runs as: a cron tick, a queue message and a public HTTP trigger as the
gateway (``dormant-gateway``, its dev-key token), an HTTP trigger with ``"auth": "jwt"`` as the HTTP
caller, an async invocation as the gateway on behalf of the caller, whose token is not stored with it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import psycopg
import pytest
import pytest_asyncio
from gw_helpers import PROBE, GatewayProcess, new_gateway, wait_for

from dormant.client import Client
from dormant.errors import Unauthenticated
from dormant_local import RabbitNode

API = "/api/v1"
SERVICE = "probe-secure"
WHOAMI = """
    @function("whoami")
    async def whoami(self, request: Nothing, ctx: Context) -> EchoResponse:
        owner = ctx.headers.get("x-dormant-trigger-owner", "")
        behalf = ctx.headers.get("x-dormant-on-behalf-of", "")
        return EchoResponse(
            text=ctx.user.user_id or "anonymous",
            release=f"owner={owner};for={behalf}",
            version=ctx.version or 0,
            pid=os.getpid(),
        )

    @function("explode")"""


@pytest_asyncio.fixture(scope="module")
async def secure_service(gw_mesh: Any, gw_tmp: Path) -> AsyncIterator[str]:
    from e2e.mesh import copy_service

    source = copy_service(PROBE, gw_tmp / SERVICE)
    probe = source / "probe.py"
    text = probe.read_text()
    assert '@service("probe-service", auth="off")' in text and '\n    @function("explode")' in text
    text = text.replace('@service("probe-service", auth="off")', f'@service("{SERVICE}", auth="required")')
    probe.write_text(text.replace('\n    @function("explode")', WHOAMI, 1))
    _, version = await gw_mesh.publish(source)
    await gw_mesh.deploy(SERVICE, version, replicas=1)
    gw_mesh.start_pod("gw-pod-secure")
    await gw_mesh.wait_serving(SERVICE, timeout=60)
    yield SERVICE


async def _finished(http: httpx.AsyncClient, call_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    async def done() -> bool:
        state.update((await http.get(f"{API}/invocations/{call_id}")).json())
        return state.get("status") in ("succeeded", "dead")

    await wait_for(done, timeout=30)
    return state


async def test_the_service_refuses_anonymous_callers(secure_service: str, gw_mesh: Any) -> None:
    async with Client(gw_mesh.broker_url, authorization="") as client:
        with pytest.raises(Unauthenticated):
            await client.call(secure_service, "whoami", {}, timeout=10)


async def test_a_cron_tick_calls_as_the_gateway_naming_the_trigger_owner(
    secure_service: str, gateway: GatewayProcess
) -> None:
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=gateway.headers("developer", sub="olga"), timeout=30
    ) as http:
        created = await http.post(
            f"{API}/functions/{secure_service}/triggers",
            json={"type": "cron", "function": "whoami", "config": {"schedule": "* * * * * *"}},
        )
        assert created.status_code == 201, created.text
        trigger_id = created.json()["id"]
        first: list[dict[str, Any]] = []

        async def ticked() -> bool:
            items = (await http.get(f"{API}/invocations", params={"triggerId": trigger_id})).json()["items"]
            first[:] = items[:1]
            return bool(items)

        try:
            await wait_for(ticked, timeout=30, interval=0.5)
        finally:
            assert (
                await http.delete(f"{API}/functions/{secure_service}/triggers/{trigger_id}")
            ).status_code == 204
        final = await _finished(http, first[0]["callId"])
    assert final["status"] == "succeeded", final
    assert final["result"]["text"] == "dormant-gateway"
    assert final["result"]["release"] == "owner=olga;for="


async def test_a_jwt_http_trigger_calls_as_the_http_caller(
    secure_service: str, gateway: GatewayProcess
) -> None:
    prefix = f"me-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        created = await http.post(
            f"{API}/functions/{secure_service}/triggers",
            headers=gateway.headers("developer", sub="olga"),
            json={
                "type": "http",
                "function": "whoami",
                "config": {"methods": ["GET"], "path": f"/{prefix}", "auth": "jwt"},
            },
        )
        assert created.status_code == 201, created.text
        answer: list[httpx.Response] = []

        async def served() -> bool:
            answer[:] = [await http.get(f"/http/{prefix}", headers=gateway.headers("viewer", sub="ann"))]
            return answer[0].status_code != 404

        await wait_for(served, timeout=10)
        # Viewers may not invoke: the gateway refuses before any call.
        assert answer[0].status_code == 403, answer[0].text
        called = await http.get(f"/http/{prefix}", headers=gateway.headers("developer", sub="ann"))
        assert called.status_code == 200, called.text
        assert called.json()["text"] == "ann"
        assert called.json()["release"] == "owner=olga;for="
        assert (await http.get(f"/http/{prefix}")).status_code == 401


async def test_a_public_http_trigger_calls_as_the_gateway(
    secure_service: str, gateway: GatewayProcess
) -> None:
    prefix = f"pub-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        created = await http.post(
            f"{API}/functions/{secure_service}/triggers",
            headers=gateway.headers("developer", sub="olga"),
            json={
                "type": "http",
                "function": "whoami",
                "config": {"methods": ["GET"], "path": f"/{prefix}", "auth": "none"},
            },
        )
        assert created.status_code == 201, created.text
        answer: list[httpx.Response] = []

        async def served() -> bool:
            answer[:] = [await http.get(f"/http/{prefix}")]
            return answer[0].status_code != 404

        await wait_for(served, timeout=10)
        assert answer[0].status_code == 200, answer[0].text
        assert answer[0].json()["text"] == "dormant-gateway"
        # A web caller's own header is neither verified nor forwarded on a public route.
        forged = await http.get(f"/http/{prefix}", headers={"Authorization": "Bearer not-a-token"})
        assert forged.status_code == 200 and forged.json()["text"] == "dormant-gateway", forged.text


async def test_an_async_invocation_runs_as_the_gateway_on_behalf_of_the_caller_whose_token_is_not_stored(
    secure_service: str, gateway: GatewayProcess, gw_db: str
) -> None:
    token = gateway.token("developer", sub="ann")
    async with httpx.AsyncClient(
        base_url=gateway.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        accepted = await http.post(f"{API}/functions/{secure_service}.whoami/invoke-async", json={})
        assert accepted.status_code == 202, accepted.text
        call_id = accepted.json()["callId"]
        final = await _finished(http, call_id)
        direct = await http.post(f"{API}/functions/{secure_service}.whoami/invoke", json={})
    assert final["status"] == "succeeded", final
    assert final["result"]["text"] == "dormant-gateway"
    assert final["result"]["release"] == "owner=;for=ann"
    assert direct.status_code == 200 and direct.json()["text"] == "ann"  # a sync call runs as the caller
    async with await psycopg.AsyncConnection.connect(gw_db) as conn:
        cursor = await conn.execute(
            "SELECT row_to_json(i)::text FROM gateway_invocations i WHERE call_id = %s", (call_id,)
        )
        row = await cursor.fetchone()
    assert row is not None and token not in row[0] and "Bearer" not in row[0]


async def test_a_queue_message_calls_as_the_gateway(
    secure_service: str, gw_mesh: Any, gw_tmp: Path, rabbitmq: RabbitNode
) -> None:
    process = new_gateway(gw_mesh, gw_tmp, "gw-queue-identity", DORMANT_RABBITMQ_URL=rabbitmq.url)
    queue_name = f"whoami-{uuid.uuid4().hex[:8]}"
    try:
        await process.start()
        connection = await aio_pika.connect_robust(rabbitmq.url)
        async with (
            connection,
            httpx.AsyncClient(base_url=process.url, headers=process.headers("developer")) as http,
        ):
            channel = await connection.channel()
            await channel.declare_queue(queue_name, durable=True)
            await channel.default_exchange.publish(
                aio_pika.Message(body=b"{}", message_id="whoami-1"), routing_key=queue_name
            )
            created = await http.post(
                f"{API}/functions/{secure_service}/triggers",
                json={
                    "type": "queue",
                    "function": "whoami",
                    "config": {"queue": queue_name, "maxAttempts": 1},
                },
            )
            assert created.status_code == 201, created.text
            trigger = f"{API}/functions/{secure_service}/triggers/{created.json()['id']}"

            async def fired() -> bool:
                return bool((await http.get(trigger)).json()["metrics"]["fired"] >= 1)

            await wait_for(fired, timeout=30, interval=0.5)
            metrics = (await http.get(trigger)).json()["metrics"]
            # Without a token the required service would refuse it (Unauthenticated: dead-lettered at once).
            assert metrics["succeeded"] == 1 and metrics["deadLettered"] == 0, metrics
            assert (await http.delete(trigger)).status_code == 204
    finally:
        process.stop()
