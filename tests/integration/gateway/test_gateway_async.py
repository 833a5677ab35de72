"""Async invocations (persisted, retried with backoff, dead letters) and cron triggers firing exactly once
with two gateway replicas."""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from gw_helpers import GatewayProcess, new_gateway, wait_for

API = "/api/v1"


async def _finished(http: httpx.AsyncClient, call_id: str) -> dict[str, Any]:
    state: dict[str, Any] = {}

    async def done() -> bool:
        state.update((await http.get(f"{API}/invocations/{call_id}")).json())
        return state.get("status") in ("succeeded", "dead")

    await wait_for(done, timeout=30)
    return state


async def test_async_invoke_is_retried_after_a_failure_and_its_result_is_readable(
    gateway: GatewayProcess,
) -> None:
    key = f"async-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        accepted = await http.post(
            f"{API}/functions/probe-service.count/invoke-async", json={"key": key, "fail": 1}
        )
        assert accepted.status_code == 202, accepted.text
        call_id = accepted.json()["callId"]
        assert accepted.headers["location"] == f"/api/v1/invocations/{call_id}"
        final = await _finished(http, call_id)
        assert final["status"] == "succeeded", final
        assert final["attempts"] == 2
        assert final["result"] == {"key": key, "count": 2}
        assert final["error"]["type"] == "SystemError"  # the first attempt's


async def test_an_async_invoke_that_keeps_failing_ends_in_the_dead_letters(gateway: GatewayProcess) -> None:
    key = f"dead-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        accepted = await http.post(
            f"{API}/functions/probe-service.count/invoke-async",
            params={"maxAttempts": "3"},
            json={"key": key, "fail": 1000},
        )
        call_id = accepted.json()["callId"]
        final = await _finished(http, call_id)
        assert final["status"] == "dead" and final["attempts"] == 3, final
        dead = (
            await http.get(f"{API}/invocations", params={"status": "dead", "function": "probe-service"})
        ).json()
        assert call_id in [item["callId"] for item in dead["items"]]
        # A permanent error is not retried.
        bad = await http.post(f"{API}/functions/probe-service.count/invoke-async", json={"nope": 1})
        final = await _finished(http, bad.json()["callId"])
        assert (
            final["status"] == "dead"
            and final["attempts"] == 1
            and final["error"]["type"] == "ValidationError"
        )


async def test_async_idempotency_key_queues_once(gateway: GatewayProcess) -> None:
    key = f"idem-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        url = f"{API}/functions/probe-service.count/invoke-async"
        first = await http.post(url, json={"key": key}, headers={"Idempotency-Key": key})
        second = await http.post(url, json={"key": key}, headers={"Idempotency-Key": key})
        assert first.json()["callId"] == second.json()["callId"]
        final = await _finished(http, first.json()["callId"])
        assert final["result"] == {"key": key, "count": 1}


async def test_cron_every_second_fires_each_tick_once_with_two_replicas(
    gateway: GatewayProcess, gw_mesh: object, gw_tmp: Path
) -> None:
    second = new_gateway(gw_mesh, gw_tmp, "gw-2")  # type: ignore[arg-type]
    key = f"cron-{uuid.uuid4().hex}"
    try:
        await second.start()
        async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
            created = await http.post(
                f"{API}/functions/probe-service/triggers",
                json={
                    "type": "cron",
                    "function": "count",
                    "config": {"schedule": "* * * * * *", "input": {"key": key}},
                },
            )
            assert created.status_code == 201, created.text
            trigger_id = created.json()["id"]
            started = datetime.fromisoformat(created.json()["createdAt"])

            async def ten_ticks() -> bool:
                items = (
                    await http.get(f"{API}/invocations", params={"triggerId": trigger_id, "limit": "500"})
                ).json()
                return len(items["items"]) >= 10

            await wait_for(ten_ticks, timeout=30, interval=0.5)
            off = await http.put(f"{API}/functions/probe-service/triggers/{trigger_id}/disable")
            assert off.status_code == 200

            async def settled() -> bool:
                items = (
                    await http.get(f"{API}/invocations", params={"triggerId": trigger_id, "limit": "500"})
                ).json()
                return all(i["status"] in ("succeeded", "dead") for i in items["items"])

            await wait_for(settled, timeout=30)
            items = (
                await http.get(f"{API}/invocations", params={"triggerId": trigger_id, "limit": "500"})
            ).json()["items"]
            ticks = sorted(datetime.fromisoformat(i["scheduledAt"]) for i in items)
            assert len(ticks) == len(set(ticks)) >= 10
            assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks)), ticks
            assert ticks[0] > started - timedelta(seconds=1)
            assert all(i["status"] == "succeeded" for i in items)
            count = await http.post(
                f"{API}/functions/probe-service.count/invoke", json={"key": key, "peek": True}
            )
            assert count.json()["count"] == len(ticks)  # the handler ran once per tick
            trigger = (await http.get(f"{API}/functions/probe-service/triggers/{trigger_id}")).json()
            assert trigger["metrics"]["fired"] == len(ticks) and trigger["metrics"]["succeeded"] == len(ticks)
    finally:
        second.stop()
