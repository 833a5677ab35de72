"""Dormant's benchmark: every figure next to references measured in the same run, and the targets.

    bash bench/run.sh [--quick]

Starts its own Mosquitto (Dormant's config) and Postgres, then measures:
1. warm call latency, 2,000 sequential calls: the Dormant runtime (validation and callId
   de-duplication on) vs a bare aiomqtt echo responder vs a FastStream MQTT responder, all driven by the
   same load generator process; plus the Dormant SDK client as the caller; plus a runtime serving the
   same function with authentication on (``auth="required"``), called with the same token every time
   and with a new RS256 token per call (``bench/issuer.py`` says whose tokens and why), and, as a
   control, the auth-off runtime sent the same token (which it drops unread);
2. throughput of one responder process with 64 calls in flight, for each of the above but the SDK;
   and what one ``TokenVerifier.verify`` costs, repeat token and first-time (``bench/verify_micro.py``);
3. deploy latency on a warm pool (catalog change -> first answer from the new version) and rollback;
4. idle cost of a serving pod (sidecar + runtime + its standby runtime) over 60 s;
5. codegen: `dormant build` (which generates, then packs) of a 20-function service, cold and no-op;
6. cold and warm start (``--only coldstart``): the first call to a service its autoscaler scaled to
   zero replicas (the call wakes it: controller, pooled pod, standby runtime), and the call after it;
7. tracing overhead (``--only tracing``): the runtime's throughput and p50/p99, and the SDK client's
   p50/p99 (client and runtime both tracing), with tracing off and at 0 %, 10 % and 100 % sampling
   (OTLP/HTTP export to a local receiver), as ratios against the untraced run;
8. the catalog at scale (``--only catalog-scale``, never by default: it starts its own Postgres sized
   for the pool): 1,000 deployments x 2 replicas and 500 simulated pods (50 x 2 and 102 with
   --quick), ``bench/catalog_scale.py``;
9. the Node.js runtime (``--only node``; by default when ``node`` and the built runtime are here):
   bench-node-service, bench-service's echo in TypeScript, with validation and de-duplication on, p50/p99
   and throughput (64 in flight) next to the echo and FastStream responders and the Python runtime.
Prints a table and writes bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
SERVICE = BENCH / "services" / "bench-service"
AUTH_SERVICE = BENCH / "services" / "bench-auth-service"
PY_ROOTS = [ROOT / p for p in ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")]
for _root in reversed(PY_ROOTS):
    sys.path.insert(0, str(_root))

from dormant_catalog import open_catalog  # noqa: E402
from dormant_cli.build_cmds import publish  # noqa: E402
from dormant_local import LocalPostgres, MosquittoProcess  # noqa: E402

sys.path.insert(0, str(BENCH))
from catalog_scale import ScaleConfig, scale_report  # noqa: E402
from catalog_scale import run as catalog_scale_run  # noqa: E402
from issuer import BenchIssuer  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, PY_ROOTS))}


def python(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[str]:
    kw.setdefault("stdout", subprocess.DEVNULL)
    return subprocess.Popen([sys.executable, *args], env=env or ENV, text=True, **kw)


def loadgen(*args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(BENCH / "loadgen.py"), *args],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def wait_answering(broker_url: str, topic: str, timeout: float = 30.0) -> None:
    from loadgen import Requester

    requester = Requester()
    await requester.start(broker_url)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(requester.call(topic), 0.5)
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing answers on {topic}")


@contextlib.asynccontextmanager
async def responder(proc: subprocess.Popen[str], broker_url: str, topic: str) -> AsyncIterator[None]:
    try:
        await wait_answering(broker_url, topic)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# --------------------------------------------------------------------------- 1 + 2: calls


LATENCY_ROUNDS = 4


def _merge(samples_ms: list[float]) -> dict[str, float]:
    ordered = sorted(samples_ms)
    return {
        "p50_ms": round(ordered[len(ordered) // 2], 4),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 4),
        "mean_ms": round(sum(ordered) / len(ordered), 4),
        "n": len(ordered),
    }


def _runtime(app_dir: Path, broker_url: str, catalog_url: str, **env: str) -> subprocess.Popen[str]:
    return python(
        "-m",
        "dormant_runtime",
        "--app-dir",
        str(app_dir),
        "--broker-url",
        broker_url,
        env={**ENV, "DORMANT_CATALOG_URL": catalog_url, "DORMANT_LOG_LEVEL": "WARNING", **env},
    )


def _checked(result: dict[str, Any], name: str) -> dict[str, Any]:
    """``result``, unless some answer differed from the echo (an error answer is not a measurement)."""
    if result.get("mismatched"):
        raise RuntimeError(f"{name}: {result['mismatched']} answers were not the echo")
    return result


async def call_figures(
    broker_url: str, catalog_url: str, issuer: BenchIssuer, key_file: Path, n_latency: int, n_throughput: int
) -> dict[str, Any]:
    """All responders run side by side; latency is measured in interleaved rounds so each one sees the
    same machine conditions, throughput one at a time (the others idle). The authenticated runtime is
    measured twice, by callers that differ only in their tokens."""
    host, port = broker_url.removeprefix("mqtt://").split(":")
    auth_topic = "service/bench-auth-service/echo"
    responders = [
        (python(str(BENCH / "echo_responder.py"), host, port, "bench/echo"), "bench/echo"),
        (python(str(BENCH / "faststream_responder.py"), broker_url, "bench/fs/echo"), "bench/fs/echo"),
        (_runtime(SERVICE, broker_url, catalog_url), "service/bench-service/echo"),
        (_runtime(AUTH_SERVICE, broker_url, catalog_url, **issuer.trust_env()), auth_topic),
    ]
    # name -> (topic, extra load-generator arguments)
    subjects: dict[str, tuple[str, tuple[str, ...]]] = {
        "echo": ("bench/echo", ()),
        "faststream": ("bench/fs/echo", ()),
        "dormant": ("service/bench-service/echo", ()),
        # Control: the same token sent to the runtime with authentication off, which drops it unread,
        # so the token's transport (its ~900 bytes through broker and decoder) is told from its check.
        "dormant_token_unread": ("service/bench-service/echo", ("--tokens", "same", "--key", str(key_file))),
        "dormant_auth_same": (auth_topic, ("--tokens", "same", "--key", str(key_file))),
        "dormant_auth_fresh": (auth_topic, ("--tokens", "fresh", "--key", str(key_file))),
    }
    results: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        for proc, topic in responders:
            await stack.enter_async_context(responder(proc, broker_url, topic))
        samples: dict[str, list[float]] = {name: [] for name in [*subjects, "dormant_sdk"]}
        per_round = max(1, n_latency // LATENCY_ROUNDS)
        for _ in range(LATENCY_ROUNDS):
            for name, (topic, extra) in subjects.items():
                measured = loadgen("latency", broker_url, topic, str(per_round), *extra)
                samples[name] += _checked(measured, name)["samples_ms"]
            samples["dormant_sdk"] += loadgen("sdk", broker_url, "bench-service", "echo", str(per_round))[
                "samples_ms"
            ]
        for name in samples:
            results[name] = {"latency": _merge(samples[name])}
        for name, (topic, extra) in subjects.items():
            measured = loadgen("throughput", broker_url, topic, str(n_throughput), "64", *extra)
            results[name]["throughput"] = _checked(measured, name)
            print(f"  {name}: {results[name]}", file=sys.stderr)
    return results


def token_check_figures(key_file: Path, quick: bool) -> dict[str, Any]:
    """``bench/verify_micro.py`` in its own process: ``TokenVerifier.verify`` alone, in microseconds."""
    sizes = ("--repeats", "10000", "--fresh", "300", "--nanoidp", "5") if quick else ()
    out = subprocess.run(
        [sys.executable, str(BENCH / "verify_micro.py"), str(key_file), *sizes],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# --------------------------------------------------------------------------- 3 + 4: deploys, idle


def _copy_release(dest: Path, release: str) -> Path:
    shutil.copytree(SERVICE, dest, ignore=shutil.ignore_patterns("generated", "__pycache__"))
    module = dest / "bench.py"
    module.write_text(module.read_text().replace('RELEASE = "a"', f'RELEASE = "{release}"'))
    return dest


async def _switch(catalog: Any, requester: Any, version: int) -> float:
    """Seconds from the catalog change to the first answer on the version's own topic."""
    topic = f"service/bench-service/v{version}/echo"
    start = time.perf_counter()
    await catalog.deploy("bench-service", version=version, replicas=1, actor="bench")
    while True:
        try:
            await asyncio.wait_for(requester.call(topic), 0.5)
            return time.perf_counter() - start
        except Exception:
            await asyncio.sleep(0.001)


def _proc_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _cpu_seconds(pids: Sequence[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def _rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def deploy_and_idle(
    broker_url: str, catalog_url: str, work: Path, trials: int, rollbacks: int, idle_s: float
) -> dict[str, Any]:
    from loadgen import Requester

    store = work / "layers"
    _, v1 = await publish(_copy_release(work / "v1", "a"), catalog_url, store, actor="bench")
    _, v2 = await publish(_copy_release(work / "v2", "b"), catalog_url, store, actor="bench")
    env = {
        **ENV,
        "DORMANT_BROKER_URL": broker_url,
        "DORMANT_CATALOG_URL": catalog_url,
        "DORMANT_LAYER_STORE": str(store),
        "DORMANT_LOG_LEVEL": "WARNING",
    }
    pod = python(
        "-m",
        "dormant_sidecar",
        "--pod-id",
        "bench-pod",
        "--work-dir",
        str(work / "pod"),
        "--lease",
        "10",
        env=env,
        stderr=subprocess.DEVNULL,
    )
    requester = Requester()
    await requester.start(broker_url)
    try:
        async with await open_catalog(catalog_url) as catalog:
            await _switch(catalog, requester, v1)
            await asyncio.sleep(2.0)  # the pool's standby runtime is warm again
            deploys: list[float] = []
            backs: list[float] = []
            for trial in range(trials + rollbacks):
                target = v2 if trial % 2 == 0 else v1
                took = await _switch(catalog, requester, target)
                (deploys if target == v2 or trial >= 2 * rollbacks else backs).append(took)
                await asyncio.sleep(1.5)  # let the pod pre-start its next standby runtime
            await asyncio.sleep(3.0)
            tree = _proc_tree(pod.pid)
            before = {pid: _cpu_seconds([pid]) for pid in tree}
            await asyncio.sleep(idle_s)
            tree = _proc_tree(pod.pid)
            idle = {
                "seconds": idle_s,
                "cpu_s": round(sum(_cpu_seconds([p]) - before.get(p, 0.0) for p in tree), 4),
                "cpu_s_by_process": [round(_cpu_seconds([p]) - before.get(p, 0.0), 4) for p in tree],
                "processes": len(tree),
                "rss_mb_total": round(sum(_rss_mb(p) for p in tree), 1),
                "rss_mb_by_process": [round(_rss_mb(p), 1) for p in tree],
            }
    finally:
        pod.terminate()
        pod.wait(30)
    return {"deploy": _stats(deploys), "rollback": _stats(backs), "idle": idle}


# --------------------------------------------------------------------------- 6: cold start


async def cold_start_figures(broker_url: str, catalog_url: str, work: Path, trials: int) -> dict[str, Any]:
    """The first call to bench-service at zero replicas (a cold start: wake request, controller scales
    to 1, the pod claims the slot and loads the version into its standby runtime) and the next (warm)."""
    from dormant import Client, wire
    from dormant.transport import NO_MATCHING_SUBSCRIBERS
    from dormant_catalog.deployments import get_deployment
    from dormant_catalog.gateway import functions
    from dormant_catalog.scaling import check_scaling

    store = work / "layers"
    _, version = await publish(_copy_release(work / "cold", "cold"), catalog_url, store, actor="bench")
    env = {
        **ENV,
        "DORMANT_BROKER_URL": broker_url,
        "DORMANT_CATALOG_URL": catalog_url,
        "DORMANT_LAYER_STORE": str(store),
        "DORMANT_LOG_LEVEL": "WARNING",
    }
    pod_args = ["--pod-id", "cold-pod", "--work-dir", str(work / "cold-pod"), "--lease", "10"]
    pod = python("-m", "dormant_sidecar", *pod_args, env=env, stderr=subprocess.DEVNULL)
    controller = python("-m", "dormant_cli", "controller", env=env, stderr=subprocess.DEVNULL)
    colds: list[float] = []
    warms: list[float] = []
    try:
        async with await open_catalog(catalog_url) as catalog, Client(broker_url) as client:
            await catalog.deploy("bench-service", version=version, replicas=1, actor="bench")
            settings = {"minInstances": 0, "maxInstances": 1, "scaleUpCooldown": 0, "scaleDownCooldown": 1}
            await catalog.db.run(
                functions.update_function,
                "bench-service",
                {"scaling": check_scaling(settings)},
                actor="bench",
            )
            probe = wire.function_topic("bench-service", "echo")
            for _ in range(trials):
                while True:  # asleep: no replica, nothing subscribed
                    deployment = await catalog.db.run(get_deployment, "bench-service")
                    if deployment is not None and deployment.replicas == 0:
                        if await client.publish(probe, b"{}") == NO_MATCHING_SUBSCRIBERS:
                            break
                    await asyncio.sleep(0.1)
                await asyncio.sleep(2.0)  # the pod's standby runtime is pre-started again
                start = time.perf_counter()
                await client.call("bench-service", "echo", {"text": "cold"}, timeout=30)
                colds.append(time.perf_counter() - start)
                start = time.perf_counter()
                await client.call("bench-service", "echo", {"text": "warm"}, timeout=30)
                warms.append(time.perf_counter() - start)
    finally:
        for process in (controller, pod):
            process.terminate()
            process.wait(30)
    return {"cold": _stats(colds), "warm": _stats(warms)}


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {}
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 1),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "n": len(ordered),
    }


# --------------------------------------------------------------------------- 7: tracing overhead

TRACING_MODES: dict[str, float | None] = {"untraced": None, "0%": 0.0, "10%": 0.1, "100%": 1.0}
"""Tracing off (no OTEL_* settings), and on with a parent-based ratio sampler at each ratio."""
TRACING_ROUNDS = 6
"""Each mode is measured in this many rounds (2 with --quick), interleaved with the other modes."""


def _tracing_env(endpoint: str, mode: str) -> dict[str, str]:
    """The OTEL_* settings of a mode: none at all (tracing off), or OTLP/HTTP export to ``endpoint``
    with a parent-based ratio sampler; the mode is a resource attribute, so spans are counted by mode."""
    ratio = TRACING_MODES[mode]
    if ratio is None:
        return {}
    return {
        "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(ratio),
        "OTEL_RESOURCE_ATTRIBUTES": f"bench.mode={ratio}",
    }


def _loadgen_env(extra: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(BENCH / "loadgen.py"), *args],
        env={**ENV, **extra},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


async def tracing_figures(
    broker_url: str, catalog_url: str, n_latency: int, n_throughput: int, rounds: int = TRACING_ROUNDS
) -> dict[str, Any]:
    """bench-service's runtime in each tracing mode, one mode at a time, in interleaved rounds (so each
    mode sees the same machine conditions): raw MQTT latency and throughput, 64 in flight (the runtime's
    spans; the sampler decides each new trace), and the SDK client's latency (the client traces too: its
    spans, and the runtime's as their children). The local receiver only keeps the export bodies while
    the clock runs; their spans are decoded and counted afterwards."""
    sys.path.insert(0, str(ROOT / "tests"))
    from e2e.otlp import OtlpReceiver
    from loadgen import WARM_UP

    topic = "service/bench-service/echo"
    raw: dict[str, list[float]] = {mode: [] for mode in TRACING_MODES}
    sdk: dict[str, list[float]] = {mode: [] for mode in TRACING_MODES}
    puts: dict[str, list[float]] = {mode: [] for mode in TRACING_MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in TRACING_MODES}
    calls = dict.fromkeys(TRACING_MODES, 0)
    per_round, put_round = max(1, n_latency // rounds), max(1, n_throughput // rounds)
    with OtlpReceiver(decode_later=True) as receiver:
        for _ in range(rounds):
            for mode in TRACING_MODES:
                env = _tracing_env(receiver.url, mode)
                # Each runtime ends (and flushes its spans) before the next mode starts.
                runtime = _runtime(SERVICE, broker_url, catalog_url, **env)
                async with responder(runtime, broker_url, topic):
                    raw[mode] += _checked(loadgen("latency", broker_url, topic, str(per_round)), mode)[
                        "samples_ms"
                    ]
                    # The runtime's own CPU time per call (its span exporter thread included): what the
                    # throughput of a runtime-bound mesh follows, and far less noisy than calls/s on a
                    # shared machine.
                    before = _cpu_seconds([runtime.pid])
                    measured = _checked(loadgen("throughput", broker_url, topic, str(put_round), "64"), mode)
                    cpu[mode].append((_cpu_seconds([runtime.pid]) - before) / (put_round + WARM_UP) * 1e6)
                    puts[mode].append(measured["calls_per_s"])
                    traced = _loadgen_env(env, "sdk", broker_url, "bench-service", "echo", str(per_round))
                    sdk[mode] += traced["samples_ms"]
                    calls[mode] += 2 * (per_round + WARM_UP) + put_round + WARM_UP
        received = receiver.spans()
        refused = list(receiver.refused)
    results: dict[str, Any] = {"refused_exports": refused}
    for mode, ratio in TRACING_MODES.items():
        mine = [s for s in received if ratio is not None and s.resource.get("bench.mode") == str(ratio)]
        results[mode] = {
            "latency": _merge(raw[mode]),
            "sdk_latency": _merge(sdk[mode]),
            "throughput": {"calls_per_s": round(statistics.median(puts[mode]), 1), "runs": puts[mode]},
            "runtime_cpu_us_per_call": {
                "median": round(statistics.median(cpu[mode]), 1),
                "runs": [round(x, 1) for x in cpu[mode]],
            },
            "calls": calls[mode],
            "execute_spans": sum(1 for s in mine if s.name == "function.execute"),
            "spans": len(mine),
        }
        print(f"  tracing {mode}: {results[mode]}", file=sys.stderr)
    return results


def tracing_report(t: dict[str, Any]) -> str:
    base = t["untraced"]
    base_cpu = base["runtime_cpu_us_per_call"]["median"]
    rows: list[Row] = []
    for mode in TRACING_MODES:
        m = t[mode]
        put = m["throughput"]["calls_per_s"] / base["throughput"]["calls_per_s"]
        cpu = m["runtime_cpu_us_per_call"]["median"]
        raw, sdk = m["latency"], m["sdk_latency"]
        rows.append(
            (
                f"tracing {mode}: calls/s; runtime CPU µs/call; p50 / p99 (ms); SDK p50 / p99 (ms)",
                f"{m['throughput']['calls_per_s']:,.0f}; {cpu:.0f}; "
                f"{raw['p50_ms']:.3f} / {raw['p99_ms']:.3f}; {sdk['p50_ms']:.3f} / {sdk['p99_ms']:.3f}",
                f"{put:.3f}x calls/s, {base_cpu / cpu:.3f}x calls per CPU-s, "
                f"{raw['p50_ms'] / base['latency']['p50_ms']:.2f}x / "
                f"{raw['p99_ms'] / base['latency']['p99_ms']:.2f}x, SDK "
                f"{sdk['p50_ms'] / base['sdk_latency']['p50_ms']:.2f}x / "
                f"{sdk['p99_ms'] / base['sdk_latency']['p99_ms']:.2f}x untraced; "
                f"{m['execute_spans']:,} execute spans / ~{m['calls']:,} calls",
                ">= 0.95x untraced calls per runtime CPU-s" if mode == "10%" else "(informative)",
                verdict(base_cpu / cpu >= 0.95) if mode == "10%" else "",
            )
        )
    return table(rows)


# --------------------------------------------------------------------------- 9: Node.js runtime

NODE_SERVICE = BENCH / "services" / "bench-node-service"
NODE_MAIN = ROOT / "runtimes" / "node" / "dist" / "main.js"


def node_ready() -> str | None:
    """Why the Node row cannot run here (no ``node``, the runtime not built), or None."""
    if shutil.which("node") is None:
        return "node is not on the PATH"
    if not NODE_MAIN.is_file():
        return f"the Node runtime is not built (no {NODE_MAIN.relative_to(ROOT)}; bash deploy/bootstrap.sh)"
    return None


def prepare_node_service() -> None:
    """``dormant generate`` then the TypeScript compile of bench-node-service (its generated/ and dist/
    are not in git); both are no-ops when nothing changed."""
    generate = [sys.executable, "-m", "dormant_cli", "generate", str(NODE_SERVICE)]
    subprocess.run(generate, env=ENV, check=True, capture_output=True)
    from dormant_codegen.node.compile import compile_service, write_dist

    write_dist(NODE_SERVICE, compile_service(NODE_SERVICE))


def _node_runtime(broker_url: str, catalog_url: str) -> subprocess.Popen[str]:
    """The Node runtime standalone, as ``_runtime`` starts the Python one: validation and callId
    de-duplication on (against the same catalog database)."""
    env = {**ENV, "DORMANT_CATALOG_URL": catalog_url, "DORMANT_LOG_LEVEL": "WARNING"}
    args = ["--app-dir", str(NODE_SERVICE), "--broker-url", broker_url]
    return subprocess.Popen(["node", str(NODE_MAIN), *args], env=env, text=True, stdout=subprocess.DEVNULL)


async def _answers_echo(broker_url: str, topic: str) -> None:
    """Refuses a responder whose answer is not the echo (an error answer is not a measurement)."""
    from loadgen import PAYLOAD, Requester

    requester = Requester()
    await requester.start(broker_url)
    answer = await requester.call(topic)
    if json.loads(answer) != json.loads(PAYLOAD):
        raise RuntimeError(f"{topic} did not answer with the echo: {answer[:300]!r}")


async def node_figures(
    broker_url: str, catalog_url: str, n_latency: int, n_throughput: int
) -> dict[str, Any]:
    """The Node runtime serving bench-node-service (bench-service's echo in TypeScript), measured exactly
    as ``call_figures`` measures the Python runtime and next to the same references, all in this run:
    the bare echo responder, FastStream's and the Python runtime (bench-service). Latency in interleaved
    rounds, all responders up; throughput one at a time, 64 in flight."""
    host, port = broker_url.removeprefix("mqtt://").split(":")
    subjects = {
        "echo": (python(str(BENCH / "echo_responder.py"), host, port, "bench/echo"), "bench/echo"),
        "faststream": (
            python(str(BENCH / "faststream_responder.py"), broker_url, "bench/fs/echo"),
            "bench/fs/echo",
        ),
        "dormant": (_runtime(SERVICE, broker_url, catalog_url), "service/bench-service/echo"),
        "node": (_node_runtime(broker_url, catalog_url), "service/bench-node-service/echo"),
    }
    results: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        for proc, topic in subjects.values():
            await stack.enter_async_context(responder(proc, broker_url, topic))
            await _answers_echo(broker_url, topic)
        samples: dict[str, list[float]] = {name: [] for name in subjects}
        per_round = max(1, n_latency // LATENCY_ROUNDS)
        for _ in range(LATENCY_ROUNDS):
            for name, (_, topic) in subjects.items():
                samples[name] += _checked(loadgen("latency", broker_url, topic, str(per_round)), name)[
                    "samples_ms"
                ]
        for name, (_, topic) in subjects.items():
            measured = loadgen("throughput", broker_url, topic, str(n_throughput), "64")
            results[name] = {"latency": _merge(samples[name]), "throughput": _checked(measured, name)}
            print(f"  node run, {name}: {results[name]}", file=sys.stderr)
    return results


def node_rows(n: dict[str, Any]) -> list[Row]:
    """The Node runtime's rows: p50, p99 and calls/s against the references and the Python runtime of
    the same run."""
    echo, fs, py, node = n["echo"], n["faststream"], n["dormant"], n["node"]
    rows: list[Row] = []
    for key in ("p50_ms", "p99_ms"):
        rows.append(
            (
                f"Node runtime: warm call {key[:3]} (ms)",
                f"{node['latency'][key]:.3f}",
                f"{_versus(node['latency'], echo['latency'], fs['latency'], key)}; "
                f"{node['latency'][key] / py['latency'][key]:.2f}x Python runtime ({py['latency'][key]:.3f})",
                "(informative)",
                "",
            )
        )
    et, ft, pt, nt = (
        n[name]["throughput"]["calls_per_s"] for name in ("echo", "faststream", "dormant", "node")
    )
    rows.append(
        (
            "Node runtime: calls/s, 64 in flight",
            f"{nt:,.0f}",
            f"{nt / et:.2f}x echo ({et:,.0f}); {nt / ft:.2f}x FastStream ({ft:,.0f}); "
            f"{nt / pt:.2f}x Python runtime ({pt:,.0f})",
            "(informative)",
            "",
        )
    )
    return rows


# --------------------------------------------------------------------------- 5: codegen


def twenty_function_service(dest: Path) -> Path:
    (dest / "schemas").mkdir(parents=True)
    schemas: dict[str, Any] = {}
    methods = []
    for i in range(20):
        schemas[f"Req{i}"] = {
            "type": "object",
            "properties": {"a": {"type": "string", "maxLength": 50}, "b": {"type": "integer"}},
            "required": ["a"],
        }
        schemas[f"Res{i}"] = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
        methods.append(
            f'    @function("fn{i}")\n    async def fn{i}(self, request: Req{i}, ctx: Context) -> Res{i}:\n'
            f"        return Res{i}(ok=True)\n"
        )
    (dest / "schemas" / "all.json").write_text(json.dumps(schemas, indent=2))
    names = ", ".join(f"Req{i}, Res{i}" for i in range(20))
    (dest / "wide.py").write_text(
        "from dormant import Context, function, service\n\n"
        f"from generated.models import {names}\n\n\n"
        '@service("wide-service")\nclass WideService:\n' + "\n".join(methods)
    )
    return dest


def codegen_figures(work: Path) -> dict[str, Any]:
    service = twenty_function_service(work / "wide")
    env = {**ENV, "DORMANT_LAYER_STORE": str(work / "codegen-layers")}

    def timed(*args: str) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dormant_cli", *args], env=env, check=True, capture_output=True)
        return time.perf_counter() - start

    # `dormant build` runs `dormant generate` first (a no-op when nothing changed), then packs the layer.
    cold = timed("build", str(service))
    noop = timed("build", str(service))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    interpreter = time.perf_counter() - start
    return {"cold_s": round(cold, 3), "noop_s": round(noop, 3), "python_startup_s": round(interpreter, 3)}


# --------------------------------------------------------------------------- report


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def _versus(ours: dict[str, float], echo: dict[str, float], peer: dict[str, float], key: str) -> str:
    return (
        f"{ours[key] / echo[key]:.2f}x echo ({echo[key]:.3f}); "
        f"{ours[key] / peer[key]:.2f}x FastStream ({peer[key]:.3f})"
    )


Row = tuple[str, str, str, str, str]
AUTH_MODES = (("dormant_auth_same", "same token"), ("dormant_auth_fresh", "new token per call"))


def auth_rows(r: dict[str, Any]) -> list[Row]:
    """The authenticated runtime's figures, each against the references and the same runtime with
    authentication off (all from the same run); then ``TokenVerifier.verify`` alone. Empty for a
    result written before these were measured."""
    calls = r["calls"]
    echo, fs, off = calls["echo"], calls["faststream"], calls["dormant"]
    et, ft, ot = (calls[name]["throughput"]["calls_per_s"] for name in ("echo", "faststream", "dormant"))
    rows: list[Row] = []
    unread = calls.get("dormant_token_unread")
    if unread:
        latency, put = unread["latency"], unread["throughput"]["calls_per_s"]
        rows.append(
            (
                "auth off, token sent unread: p50 / p99 (ms), calls/s",
                f"{latency['p50_ms']:.3f} / {latency['p99_ms']:.3f}, {put:,.0f}",
                f"{latency['p50_ms'] / off['latency']['p50_ms']:.2f}x / "
                f"{latency['p99_ms'] / off['latency']['p99_ms']:.2f}x / {put / ot:.2f}x auth off",
                "(control)",
                "",
            )
        )
    for name, label in AUTH_MODES:
        if name not in calls:
            continue
        latency, put = calls[name]["latency"], calls[name]["throughput"]["calls_per_s"]
        for key in ("p50_ms", "p99_ms"):
            versus = _versus(latency, echo["latency"], fs["latency"], key)
            rows.append(
                (
                    f"auth on, {label}: call {key[:3]} (ms)",
                    f"{latency[key]:.3f}",
                    f"{versus}; {latency[key] / off['latency'][key]:.2f}x auth off",
                    "(informative)",
                    "",
                )
            )
        rows.append(
            (
                f"auth on, {label}: calls/s, 64 in flight",
                f"{put:,.0f}",
                f"{put / et:.2f}x echo ({et:,.0f}); {put / ft:.2f}x FastStream ({ft:,.0f}); "
                f"{put / ot:.2f}x auth off",
                "(informative)",
                "",
            )
        )
    check = r.get("token_check")
    if check:
        first = check["first_time_rs256"]
        idp = check.get("nanoidp", {})
        if "first_time_rs256" in idp:
            provider = f"nanoidp's own tokens, first check: p50 {idp['first_time_rs256']['p50_us']:.0f} µs"
        else:
            provider = f"nanoidp's own tokens: {idp.get('skipped', 'not measured')}"
        rows.append(
            (
                "TokenVerifier.verify (µs): repeat / first RS256",
                f"{check['repeat_us']:.2f} / {first['p50_us']:.0f}",
                f"n={check['repeats']:,} / p50 of {first['n']:,}; {provider}",
                "(informative)",
                "",
            )
        )
    return rows


def report(r: dict[str, Any]) -> str:
    echo, fs, dm, sdk = (
        r["calls"]["echo"],
        r["calls"]["faststream"],
        r["calls"]["dormant"],
        r["calls"]["dormant_sdk"],
    )
    el, dl = echo["latency"], dm["latency"]
    et, ft, dt = (
        echo["throughput"]["calls_per_s"],
        fs["throughput"]["calls_per_s"],
        dm["throughput"]["calls_per_s"],
    )
    rows: list[Row] = [
        (
            "warm call p50 (ms)",
            f"{dl['p50_ms']:.3f}",
            _versus(dl, el, fs["latency"], "p50_ms"),
            "<= 1.5x echo",
            verdict(dl["p50_ms"] <= 1.5 * el["p50_ms"]),
        ),
        (
            "warm call p99 (ms)",
            f"{dl['p99_ms']:.3f}",
            _versus(dl, el, fs["latency"], "p99_ms"),
            "<= 2x echo",
            verdict(dl["p99_ms"] <= 2 * el["p99_ms"]),
        ),
        (
            "SDK client call p50 / p99 (ms)",
            f"{sdk['latency']['p50_ms']:.3f} / {sdk['latency']['p99_ms']:.3f}",
            f"{sdk['latency']['p50_ms'] / el['p50_ms']:.2f}x / "
            f"{sdk['latency']['p99_ms'] / el['p99_ms']:.2f}x echo",
            "(informative)",
            "",
        ),
        (
            "throughput, 64 in flight (calls/s)",
            f"{dt:,.0f}",
            f"{dt / et:.2f}x echo ({et:,.0f}); {dt / ft:.2f}x FastStream ({ft:,.0f})",
            ">= 0.8x echo and >= 5,000",
            verdict(dt >= 0.8 * et and dt >= 5000),
        ),
        *auth_rows(r),
    ]
    d = r.get("deploys")
    if d:
        rows += [
            (
                "deploy: catalog change -> serving (ms)",
                f"p50 {d['deploy']['p50_ms']} / p99 {d['deploy']['p99_ms']}",
                f"n={d['deploy']['n']}",
                "p50 <= 150, p99 <= 400",
                verdict(d["deploy"]["p50_ms"] <= 150 and d["deploy"]["p99_ms"] <= 400),
            ),
            (
                "rollback (redeploy of the previous version) (ms)",
                f"p50 {d['rollback']['p50_ms']} / p99 {d['rollback']['p99_ms']}",
                f"n={d['rollback']['n']}",
                "<= 100",
                verdict(d["rollback"]["p99_ms"] <= 100),
            ),
            (
                "idle pod, per minute (CPU s) / RSS (MB)",
                f"{d['idle']['cpu_s'] * 60 / d['idle']['seconds']:.3f} / {d['idle']['rss_mb_total']}",
                f"{d['idle']['processes']} processes: {d['idle']['rss_mb_by_process']} MB",
                "<= 0.1 CPU-s, <= 50 MB",
                verdict(
                    d["idle"]["cpu_s"] * 60 / d["idle"]["seconds"] <= 0.1 and d["idle"]["rss_mb_total"] <= 50
                ),
            ),
        ]
    cs = r.get("cold_start")
    if cs:
        rows += [
            (
                "cold start: first call at 0 replicas (ms)",
                f"p50 {cs['cold']['p50_ms']} / max {cs['cold']['max_ms']}",
                f"n={cs['cold']['n']}; wake, scale 0 -> 1, claim, load into the standby runtime",
                "< 500 (seed, Python)",
                verdict(cs["cold"]["max_ms"] < 500),
            ),
            (
                "warm start: the call after it (ms)",
                f"p50 {cs['warm']['p50_ms']} / max {cs['warm']['max_ms']}",
                f"n={cs['warm']['n']}",
                "(informative)",
                "",
            ),
        ]
    c = r.get("codegen")
    if c:
        rows.append(
            (
                "codegen 20 functions, generate + build (s)",
                f"cold {c['cold_s']} / no-op {c['noop_s']}",
                f"one `dormant build` process, python start-up {c['python_startup_s']} s",
                "<= 1.5 cold, <= 0.2 no-op",
                verdict(c["cold_s"] <= 1.5 and c["noop_s"] <= 0.2),
            )
        )
    return table(rows)


def table(rows: list[Row]) -> str:
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    head = ("figure", "Dormant", "reference (same run)", "target", "")
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


async def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/run.sh", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a smoke run, not for the docs)")
    parser.add_argument(
        "--only",
        choices=["calls", "deploys", "codegen", "coldstart", "tracing", "catalog-scale", "node"],
        action="append",
    )
    args = parser.parse_args(argv)
    only = set(args.only or ["calls", "deploys", "codegen", "coldstart", "tracing", "node"])
    if "node" in only and (why := node_ready()) is not None:
        if args.only:
            parser.error(f"--only node: {why}")
        print(f"the Node runtime row is skipped: {why}", file=sys.stderr)
        only.discard("node")
    n_latency, n_throughput = (300, 3000) if args.quick else (2000, 20000)
    trials, rollbacks, idle_s = (6, 4, 10.0) if args.quick else (50, 20, 60.0)
    cold_trials = 3 if args.quick else 10
    for app_dir in (SERVICE, AUTH_SERVICE):
        generate = [sys.executable, "-m", "dormant_cli", "generate", str(app_dir)]
        await asyncio.to_thread(subprocess.run, generate, env=ENV, check=True, capture_output=True)
    if "node" in only:
        await asyncio.to_thread(prepare_node_service)
    work = Path(tempfile.mkdtemp(prefix="dormant-bench-"))
    os.chmod(work, 0o755)
    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        async with (
            MosquittoProcess(data_dir=work / "broker") as broker,
            LocalPostgres(data_dir=work / "pg") as pg,
        ):
            catalog_url = await pg.create_database(f"bench_{uuid.uuid4().hex[:6]}")
            async with await open_catalog(catalog_url):
                pass  # migrations applied once, before anything is timed
            if "calls" in only:
                print("calls ...", file=sys.stderr)
                key_file = work / "bench-issuer.pem"
                issuer = BenchIssuer.create(key_file)
                result["calls"] = await call_figures(
                    broker.url, catalog_url, issuer, key_file, n_latency, n_throughput
                )
                print("token check ...", file=sys.stderr)
                result["token_check"] = await asyncio.to_thread(token_check_figures, key_file, args.quick)
            if "deploys" in only:
                print("deploys and idle ...", file=sys.stderr)
                result["deploys"] = await deploy_and_idle(
                    broker.url, catalog_url, work, trials, rollbacks, idle_s
                )
            if "coldstart" in only:
                print("cold start ...", file=sys.stderr)
                result["cold_start"] = await cold_start_figures(broker.url, catalog_url, work, cold_trials)
            if "tracing" in only:
                print("tracing overhead ...", file=sys.stderr)
                result["tracing"] = await tracing_figures(
                    broker.url, catalog_url, n_latency, n_throughput, 2 if args.quick else TRACING_ROUNDS
                )
            if "node" in only:
                print("Node runtime ...", file=sys.stderr)
                result["node"] = await node_figures(broker.url, catalog_url, n_latency, n_throughput)
        if "catalog-scale" in only:  # its own Postgres (max_connections for the pool)
            print("catalog at scale ...", file=sys.stderr)
            scale = ScaleConfig(deployments=50) if args.quick else ScaleConfig(deployments=1000, pods=500)
            result["catalog_scale"] = await catalog_scale_run(scale)
        if "codegen" in only:
            print("codegen ...", file=sys.stderr)
            result["codegen"] = codegen_figures(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    if "calls" in result:
        print(report(result))
    if "tracing" in result:
        print(tracing_report(result["tracing"]))
    if "node" in result:
        print(table(node_rows(result["node"])))
    if "catalog_scale" in result:
        print(scale_report(result["catalog_scale"]))
    if not {"calls", "tracing", "catalog_scale", "node"} & set(result):
        print(json.dumps(result, indent=2))
    print(f"\nmachine: {result['machine']}; JSON in bench/results/latest.json")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
