"""The console's live feed on a secured Mosquitto (dynamic security, the components' listener): the
gateway's broker account may read every runtime's ``mesh/stats`` windows (its rule in
``broker_security.RULES``), and the feed fills the console's figures from them; an account without
the rule (a runtime's) is refused, and the feed says so instead of retrying as if the broker were
down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
import pytest_asyncio

from dormant.mqtt import Message, connect
from dormant_gateway.console.live import LiveStats, StatsFeed
from dormant_local import MosquittoProcess
from dormant_local.broker_security import BrokerAccount, SecurityPlan

SERVICE = "svc"


@pytest.fixture(scope="module")
def plan() -> SecurityPlan:
    return SecurityPlan.for_mesh(services=[SERVICE], callers=["alice"])


@pytest_asyncio.fixture(scope="module")
async def secured(
    plan: SecurityPlan, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[MosquittoProcess]:
    process = MosquittoProcess(data_dir=tmp_path_factory.mktemp("console-broker"), security=plan)
    await process.start()
    try:
        yield process
    finally:
        await process.stop()


def component_url(broker: MosquittoProcess, account: BrokerAccount) -> str:
    return account.url(broker.host, broker.component_port)


async def until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        assert loop.time() < end, "condition not met"
        await asyncio.sleep(0.05)


async def test_the_gateway_account_reads_the_windows_and_the_feed_sums_them(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    stats = LiveStats()
    feed = StatsFeed(component_url(secured, plan.account("dormant.gateway")), stats)
    runtime = plan.runtime(SERVICE)
    publisher = await connect(
        secured.host,
        secured.component_port,
        client_id="dormant-svc-v1-s0-g1",
        username=runtime.username,
        password=runtime.password,
    )
    feed.start()
    try:
        await until(lambda: feed.state == "live")
        window = {
            "calls": 4,
            "ok": 3,
            "errors": {"SystemError": 1},
            "latency": {"le": [10], "counts": [4, 0]},
        }

        async def published() -> bool:
            await publisher.publish(Message(f"mesh/stats/{SERVICE}/v1/pod-a", orjson.dumps(window), qos=0))
            return bool(stats.service(SERVICE))

        loop = asyncio.get_running_loop()
        end = loop.time() + 20
        while not await published():
            assert loop.time() < end, "no window reached the feed"
            await asyncio.sleep(0.2)
        figures = stats.service(SERVICE)[1]
        assert figures["pods"] == ["pod-a"] and figures["total"]["errors"] >= 1
        assert feed.to_json()["state"] == "live" and feed.detail is None
    finally:
        await feed.stop()
        await publisher.disconnect()


async def test_an_account_without_the_rule_is_refused_and_the_feed_says_so(
    secured: MosquittoProcess, plan: SecurityPlan
) -> None:
    feed = StatsFeed(component_url(secured, plan.runtime(SERVICE)), LiveStats())
    feed.start()
    try:
        await until(lambda: feed.state != "connecting")
        assert feed.state == "refused", (feed.state, feed.detail)
        assert "mesh/stats" in (feed.detail or "")
    finally:
        await feed.stop()
