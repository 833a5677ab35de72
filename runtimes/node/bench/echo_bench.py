"""Echo latency and throughput, Node runtime vs Python runtime, on one machine (a quick measurement).

Starts a private Mosquitto, then each runtime standalone (``--no-dedup``: no database on the path) on a
service with an ``echo`` function, and measures with ``dormant.Client``: p50/p99 of sequential calls,
and calls/s with 32 calls in flight. Usage (from the repo root, the Node runtime built)::

    PYTHONPATH=libs/python:codegen:catalog:sidecar:runtimes/python:gateway \
        .venv/bin/python runtimes/node/bench/echo_bench.py NODE_APP_DIR [SECONDS]

NODE_APP_DIR: an app dir whose service ``node-echo`` has ``echo({text})`` (tests/integration/node_app,
compiled as tests/integration/test_node_runtime.py does). The Python side serves
tests/fixtures/services/probe-service.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dormant import Client
from dormant_local import MosquittoProcess

ROOT = Path(__file__).resolve().parents[3]


async def wait_serving(client: Client, service: str) -> None:
    for _ in range(300):
        try:
            await client.call(service, "echo", {"text": "warm"}, timeout=2)
            return
        except Exception:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{service} not serving")


async def measure(url: str, service: str, seconds: float) -> dict[str, float]:
    async with Client(url) as client:
        await wait_serving(client, service)
        for _ in range(200):
            await client.call(service, "echo", {"text": "warm"})
        latencies = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            t = time.perf_counter()
            await client.call(service, "echo", {"text": "hello"})
            latencies.append((time.perf_counter() - t) * 1000)
        latencies.sort()
        done = 0
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await client.call(service, "echo", {"text": "hello"})
                done += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(32)))
        elapsed = time.perf_counter() - t0
    return {
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 3),
        "sequential_calls_s": round(len(latencies) / seconds, 1),
        "concurrent_calls_s": round(done / elapsed, 1),
    }


async def main(node_app: Path, seconds: float) -> None:
    broker = MosquittoProcess(data_dir=Path(tempfile.mkdtemp(prefix="echo-bench-")))
    await broker.start()
    try:
        node_main = str(ROOT / "runtimes/node/dist/main.js")
        runs = {
            "node": (["node", node_main, "--app-dir", str(node_app)], "node-echo"),
            "python": (
                [sys.executable, "-m", "dormant_runtime", "--app-dir",
                 str(ROOT / "tests/fixtures/services/probe-service")],
                "probe-service",
            ),
        }  # fmt: skip
        for name, (cmd, service) in runs.items():
            process = subprocess.Popen(  # noqa: ASYNC220 - a child that outlives this call
                [*cmd, "--no-dedup", "--broker-url", broker.url],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                print(name, await measure(broker.url, service, seconds), flush=True)
            finally:
                process.terminate()
                process.wait(30)
    finally:
        await broker.stop()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 5.0))
