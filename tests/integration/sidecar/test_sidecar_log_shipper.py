"""``LogShipper`` on a real broker and database: records published on ``mesh/logs/{svc}/v{N}`` and stored;
an unreachable catalog costs the oldest records (counted), never a wait on the output path."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import orjson
from sidecar_helpers import wait_for

from dormant import wire
from dormant.transport import connect_transport
from dormant_catalog import Catalog
from dormant_catalog.function_logs import LogFilter, query_logs
from dormant_local import MosquittoProcess
from dormant_sidecar.log_shipper import LogShipper
from dormant_telemetry.logs import iso_timestamp, parse_line

_ids = itertools.count()


def record(message: str, *, call: str | None = None) -> dict[str, Any]:
    out = parse_line(message, "stdout", now=time.time())
    out.update(requestId=call, functionName="svc", version="v1", logId=f"t-{next(_ids)}")
    return out


async def test_records_are_published_and_stored(broker: MosquittoProcess, catalog: Catalog) -> None:
    reader = await connect_transport(broker.url, client_id="test-log-reader")
    await reader.subscribe([wire.logs_filter("svc")], qos=0)
    shipper = LogShipper(broker_url=broker.url, catalog_url=catalog.url, pod_id="pod-x")
    shipper.start()
    try:
        await wait_for(lambda: shipper.publishing, what="the shipper's broker connection")
        for i in range(3):
            shipper.offer("svc", 1, record(f"line {i}", call="c-1"))
        shipper.offer("other", 4, record("not svc's"))
        live: list[tuple[str, dict[str, Any]]] = []
        async with asyncio.timeout(30):
            async for message in reader.messages():
                live.append((message.topic, orjson.loads(message.payload)))
                if len(live) == 3:
                    break
        assert [topic for topic, _ in live] == ["mesh/logs/svc/v1"] * 3
        assert [r["message"] for _, r in live] == ["line 0", "line 1", "line 2"]

        async def stored() -> bool:
            rows = await catalog.db.run(query_logs, LogFilter("svc", call_id="c-1"))
            return [r.record["message"] for r in rows] == ["line 0", "line 1", "line 2"]

        await wait_for(stored, within=30, what="the records in the catalog")
        assert [r.record["message"] for r in await catalog.db.run(query_logs, LogFilter("other"))] == [
            "not svc's"
        ]
    finally:
        await shipper.close()
        await reader.close()
    assert shipper.dropped == 0 and shipper.pending == 0


async def test_an_unreachable_catalog_drops_the_oldest_and_counts_them() -> None:
    shipper = LogShipper(
        broker_url="mqtt://127.0.0.1:1",  # nobody: publishing waits for a broker in the background
        catalog_url="postgresql://dormant@127.0.0.1:1/none?connect_timeout=1",
        pod_id="pod-y",
        max_buffer=100,
    )
    shipper.start()
    try:
        now = iso_timestamp(time.time())
        for i in range(250):
            shipper.offer("svc", 1, {"timestamp": now, "level": "INFO", "message": f"m{i}"})
        # offer() returned every time at once (it is not a coroutine): the output path never waits.
        assert shipper.pending <= 100
        assert shipper.dropped >= 150
        await asyncio.sleep(0.5)
        assert shipper.pending <= 100
    finally:
        await shipper.close(flush_timeout_s=0.2)
    assert shipper.stored == 0
