"""Dormant's Prometheus metrics (issue 13, item 2), in process: the names and their mapping from the
seed's, what a scrape exposes (no ``_total_total``), the controller's sums of runtime stats windows,
the runtime's per-function windows, and the small HTTP server of ``dormant_telemetry.endpoint``."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dormant_controller.metrics import COLD_START_RECENT_S, STALE_S, FunctionMetrics
from dormant_runtime import stats as stats_module
from dormant_runtime.stats import BOUNDS_MS, CallStats, mark_start
from dormant_telemetry import metrics as m
from dormant_telemetry.endpoint import ObservabilityServer, metrics_port
from dormant_telemetry.health import CachedProbe, Check, report

SEED = {
    "functions.invocations.total": "dormant_function_invocations_total",
    "functions.invocations.cold_start.total": "dormant_function_cold_starts_total",
    "functions.invocations.errors.total": "dormant_function_errors_total",
    "functions.invocations.throttled.total": "dormant_function_throttles_total",
    "function.duration.seconds": "dormant_function_duration_seconds",
    "function.init.duration.seconds": "dormant_function_init_duration_seconds",
    "function.memory.used.bytes": "dormant_function_memory_used_bytes",
    "functions.count": "dormant_functions",
    "functions.versions.count": "dormant_function_versions",
    "runners.active": "dormant_runners_active",
    "runners.containers.count": "dormant_runner_containers",
    "functions.concurrent.executions": "dormant_function_concurrent_executions",
}
"""Every metric the seed requires, and what a scrape shows for it (a counter with its ``_total``)."""


def scrape(registry: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name -> {sorted labels: value}, parsed back from the text exposition."""
    text = m.render(registry)[0].decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


# ------------------------------------------------------------------------------------------ names


def test_every_seed_metric_has_a_prometheus_name_written_down() -> None:
    exposed = {seed: m.BY_NAME[name] for seed, name in m.SEED_NAMES.items()}
    assert set(exposed) == set(SEED)
    for seed, d in exposed.items():
        shown = d.exposed_names[0] if d.kind == "counter" else d.name
        assert shown == SEED[seed], seed


def test_names_follow_the_prometheus_conventions() -> None:
    assert len(m.BY_NAME) == len(m.ALL)
    for d in m.ALL:
        assert re.fullmatch(r"dormant_[a-z][a-z0-9_]*", d.name), d.name
        # prometheus_client appends _total itself: a counter declared with it would show _total_total.
        assert not d.name.endswith("_total"), d.name
        assert not d.name.endswith(("_count", "_sum", "_bucket")), d.name
        if d.kind == "histogram":
            assert d.name.endswith(("_seconds", "_bytes")) and list(d.buckets) == sorted(d.buckets), d.name
        assert all(re.fullmatch(r"[a-z][a-z0-9_]*", label) for label in d.labels), d.name


def test_the_runtimes_latency_buckets_are_the_exported_ones() -> None:
    assert tuple(float(b) for b in BOUNDS_MS) == tuple(float(b) for b in m.DURATION_BUCKETS_MS)
    assert m.DURATION.buckets == tuple(b / 1000 for b in BOUNDS_MS)


def test_a_scrape_shows_each_family_once_and_no_total_total() -> None:
    registry = m.new_registry()
    for d in m.ALL:
        labels = ["x"] * len(d.labels)
        if d.kind == "counter":
            metric = m.counter(d, registry)
            (metric.labels(*labels) if labels else metric).inc()
        elif d.kind == "gauge":
            gauge = m.gauge(d, registry)
            (gauge.labels(*labels) if labels else gauge).set(1)
        else:
            histogram = m.histogram(d, registry)
            (histogram.labels(*labels) if labels else histogram).observe(0.5)
    samples = scrape(registry)
    ours = {name for name in samples if name.startswith("dormant_")}
    assert ours == m.exposed_names()
    assert not [name for name in samples if "_total_total" in name]
    assert not [name for name in samples if name.endswith("_created")]
    assert any(name.startswith("process_") for name in samples)  # the process collector is there


# ------------------------------------------------------------------------------------------ windows


def make_window(service: str = "svc", version: int = 2, pod: str = "pod-1", **fields: Any) -> bytes:
    stats = CallStats()
    window = stats.take(service, version, pod)
    window.update(fields)
    return orjson.dumps(window)


def topic(service: str = "svc", version: int = 2, pod: str = "pod-1") -> str:
    return f"mesh/stats/{service}/v{version}/{pod}"


def test_the_runtime_counts_per_function_and_leaves_throttles_out_of_the_duration(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stats = CallStats()
    stats.started, stats.init_seconds = 1000.0, 0.25
    stats.in_flight = lambda: 3
    stats.declared = frozenset({"echo", "sleep"})
    mark_start()
    started = stats_module._STARTED.get()
    assert started is not None
    with monkeypatch.context() as patched:
        patched.setattr(time, "monotonic", lambda: started + 0.15)  # 150 ms after the start
        stats.record(True, b"{}", "echo")
        stats.record(False, orjson.dumps({"type": "ValidationError"}), "echo")
        stats.record(False, orjson.dumps({"type": "Throttled"}), "sleep")
        stats.record(False, orjson.dumps({"type": "NotFound"}), "anyNameACallerLikes")
    window = stats.take("svc", 2, "pod-1")
    # The fields the rollouts read are unchanged: every answered call, Throttled among the errors.
    assert window["calls"] == 4 and window["ok"] == 1
    assert window["errors"] == {"ValidationError": 1, "Throttled": 1, "NotFound": 1}
    assert sum(window["latency"]["counts"]) == 4
    # A name the service does not declare is counted, but not as a series of its own.
    assert set(window["functions"]) == {"echo", "sleep", "(unknown)"}
    echo, sleep = window["functions"]["echo"], window["functions"]["sleep"]
    assert (echo["calls"], echo["ok"], echo["errors"]) == (2, 1, {"ValidationError": 1})
    assert echo["counts"][BOUNDS_MS.index(200)] == 2 and echo["sumMs"] == pytest.approx(300, abs=1)
    assert (sleep["calls"], sleep["errors"], sum(sleep["counts"]), sleep["sumMs"]) == (
        1,
        {"Throttled": 1},
        0,
        0,
    )
    assert (window["started"], window["initSeconds"], window["inFlight"]) == (1000.0, 0.25, 3)
    assert window["rssBytes"] is None or window["rssBytes"] > 0
    assert stats.take("svc", 2, "pod-1")["functions"] == {}


def fn(calls: int, ok: int, errors: dict[str, int], counts: dict[int, int], sum_ms: float) -> dict[str, Any]:
    histogram = [0] * (len(BOUNDS_MS) + 1)
    for bound, count in counts.items():
        histogram[BOUNDS_MS.index(bound) if bound in BOUNDS_MS else len(BOUNDS_MS)] = count
    return {"calls": calls, "ok": ok, "errors": errors, "counts": histogram, "sumMs": sum_ms}


def collected(metrics: FunctionMetrics) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = m.new_registry(process=False)
    registry.register(metrics)
    return scrape(registry)


def key(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_the_controller_sums_windows_into_counters_and_histograms() -> None:
    metrics = FunctionMetrics()
    now = 5000.0
    first = {"echo": fn(5, 3, {"ValidationError": 1, "Throttled": 1}, {10: 3, 100: 1}, 140.0)}
    second = {"echo": fn(2, 2, {}, {10: 2}, 15.0), "explode": fn(1, 0, {"SystemError": 1}, {5: 1}, 4.0)}
    assert metrics.add(topic(), make_window(functions=first, calls=5), now=now)
    assert metrics.add(topic(pod="pod-2"), make_window(pod="pod-2", functions=second, calls=3), now=now)
    assert not metrics.add("mesh/routes/svc", b"{}") and not metrics.add(topic(), b"not json")
    s = collected(metrics)
    echo = {"service": "svc", "function": "echo", "version": "2"}
    explode = {"service": "svc", "function": "explode", "version": "2"}
    assert s["dormant_function_invocations_total"] == {key(**echo): 6.0, key(**explode): 1.0}
    assert s["dormant_function_throttles_total"] == {key(**echo): 1.0, key(**explode): 0.0}
    assert s["dormant_function_errors_total"] == {
        key(**echo, error_type="ValidationError"): 1.0,
        key(**explode, error_type="SystemError"): 1.0,
    }
    buckets = s["dormant_function_duration_seconds_bucket"]
    assert buckets[key(**echo, le="0.005")] == 0 and buckets[key(**echo, le="0.01")] == 5
    assert buckets[key(**echo, le="0.1")] == 6 and buckets[key(**echo, le="+Inf")] == 6
    assert s["dormant_function_duration_seconds_count"][key(**echo)] == 6
    assert s["dormant_function_duration_seconds_sum"][key(**echo)] == pytest.approx(0.155)
    assert metrics.windows == 2


def test_a_runtime_is_one_cold_start_however_many_windows_it_sends() -> None:
    metrics = FunctionMetrics()
    at = 10_000.0
    for second in range(3):  # one runtime's windows: counted once, with its init duration
        window = make_window(started=at, initSeconds=0.8, at=at + second, calls=1, rssBytes=50 * m.MIB)
        metrics.add(topic(), window, now=at + second)
    # Before it serves, a runtime's windows carry no initSeconds: nothing is counted yet.
    metrics.add(topic(pod="pod-2"), make_window(pod="pod-2", started=at, initSeconds=None, at=at), now=at)
    # A runtime that had been running long before this controller heard of it is not a cold start.
    late = make_window(pod="pod-3", started=at - 2 * COLD_START_RECENT_S, initSeconds=0.5, at=at)
    metrics.add(topic(pod="pod-3"), late, now=at)
    s = collected(metrics)
    version = key(service="svc", version="2")
    assert s["dormant_function_cold_starts_total"] == {version: 1.0}
    assert s["dormant_function_init_duration_seconds_count"] == {version: 1.0}
    assert s["dormant_function_init_duration_seconds_sum"][version] == pytest.approx(0.8)
    assert s["dormant_function_init_duration_seconds_bucket"][key(service="svc", version="2", le="1.0")] == 1
    # Memory: one sample per window in which the runtime answered calls (three here, 50 MiB each).
    assert s["dormant_function_memory_used_bytes_count"] == {version: 3.0}
    assert (
        s["dormant_function_memory_used_bytes_bucket"][key(service="svc", version="2", le="6.7108864e+07")]
        == 3
    )


def test_concurrent_executions_add_up_the_pods_last_windows_and_forget_silent_pods() -> None:
    metrics = FunctionMetrics()
    now = time.time()
    metrics.add(topic(pod="a"), make_window(pod="a", inFlight=2), now=now - 10)  # replaced below
    metrics.add(topic(pod="a"), make_window(pod="a", inFlight=3), now=now)
    metrics.add(topic(pod="b"), make_window(pod="b", inFlight=4), now=now)
    metrics.add(topic(pod="c"), make_window(pod="c", inFlight=9), now=now - STALE_S - 1)  # gone quiet
    metrics.add(topic(version=3, pod="d"), make_window(version=3, pod="d", inFlight=0), now=now)
    s = collected(metrics)
    assert s["dormant_function_concurrent_executions"] == {
        key(service="svc", version="2"): 7.0,
        key(service="svc", version="3"): 0.0,
    }


def test_windows_of_older_runtimes_count_under_no_function() -> None:
    metrics = FunctionMetrics()
    old = {
        "calls": 4,
        "ok": 2,
        "errors": {"SystemError": 1, "Throttled": 1},
        "latency": {"le": list(BOUNDS_MS), "counts": [4] + [0] * len(BOUNDS_MS)},
    }
    metrics.add(topic(), orjson.dumps(old))
    s = collected(metrics)
    nameless = {"service": "svc", "function": "", "version": "2"}
    assert s["dormant_function_invocations_total"] == {key(**nameless): 3.0}
    assert s["dormant_function_errors_total"] == {key(**nameless, error_type="SystemError"): 1.0}
    assert "dormant_function_duration_seconds_count" not in s  # no latency sum: no duration


def test_other_latency_bounds_are_rebucketed_onto_the_exported_ones() -> None:
    metrics = FunctionMetrics()
    window = orjson.loads(make_window())
    window["latency"]["le"] = [3, 25, 1000]  # a runtime built with other bounds
    window["functions"] = {"f": {"calls": 4, "ok": 4, "errors": {}, "counts": [1, 1, 1, 1], "sumMs": 1500}}
    metrics.add(topic(), orjson.dumps(window))
    buckets = collected(metrics)["dormant_function_duration_seconds_bucket"]
    labels = {"service": "svc", "function": "f", "version": "2"}
    # 3 ms -> the 5 ms bucket, 25 ms -> 50 ms, 1000 ms -> 1 s, overflow -> +Inf
    assert buckets[key(**labels, le="0.002")] == 0 and buckets[key(**labels, le="0.005")] == 1
    assert buckets[key(**labels, le="0.05")] == 2 and buckets[key(**labels, le="1.0")] == 3
    assert buckets[key(**labels, le="60.0")] == 3 and buckets[key(**labels, le="+Inf")] == 4


# ------------------------------------------------------------------------------------------ endpoint


async def http_get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


async def test_the_endpoint_serves_metrics_and_says_ready_only_when_every_check_passes() -> None:
    registry = m.new_registry(process=False)
    m.gauge(m.POD_READY, registry).set(1)
    checks = [Check("mqtt", True, "connected"), Check("database", False, "no answer within 2 s")]
    scraped = []

    async def ready() -> list[Check]:
        return list(checks)

    async def before() -> None:
        scraped.append(1)

    async with ObservabilityServer("sidecar", registry=registry, ready=ready, before_scrape=before) as server:
        status, headers, body = await http_get(server.port, "/metrics")
        assert status == 200 and headers["content-type"].startswith("text/plain")
        assert b"dormant_pod_ready 1.0" in body and scraped == [1]
        status, _, body = await http_get(server.port, "/readyz")
        assert status == 503
        assert orjson.loads(body) == {
            "status": "unavailable",
            "component": "sidecar",
            "checks": {
                "mqtt": {"ok": True, "detail": "connected"},
                "database": {"ok": False, "detail": "no answer within 2 s"},
            },
        }
        checks[1] = Check("database", True, "answered in 1 ms")
        status, _, body = await http_get(server.port, "/readyz?verbose=1")
        assert status == 200 and orjson.loads(body)["status"] == "ok"
        status, _, body = await http_get(server.port, "/healthz")
        assert status == 200 and orjson.loads(body) == {"status": "ok", "component": "sidecar", "checks": {}}
        assert (await http_get(server.port, "/nothing"))[0] == 404
        assert (await http_get(server.port, "/metrics", "POST"))[0] == 405
        status, _, body = await http_get(server.port, "/healthz", "HEAD")
        assert status == 200 and body == b""


def test_the_metrics_port_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DORMANT_METRICS_PORT", raising=False)
    assert metrics_port() is None and metrics_port("") is None
    assert metrics_port("0") == 0 and metrics_port("9464") == 9464
    monkeypatch.setenv("DORMANT_METRICS_PORT", "9100")
    assert metrics_port() == 9100 and metrics_port("9200") == 9200
    for bad in ("http", "-1", "70000"):
        with pytest.raises(ValueError):
            metrics_port(bad)


async def test_a_cached_probe_asks_once_per_ttl_and_says_why_it_failed() -> None:
    calls: list[int] = []

    async def work() -> None:
        calls.append(1)
        if len(calls) > 1:
            raise ConnectionError("connection refused\nsecond line")

    probe = CachedProbe("database", work, ttl_s=60)
    first, again = await probe(), await probe()
    assert first.ok and again is first and len(calls) == 1
    failing = CachedProbe("database", work, ttl_s=0)
    check = await failing()
    assert not check.ok and check.detail == "ConnectionError: connection refused"

    async def hang() -> None:
        await asyncio.sleep(10)

    slow = await CachedProbe("database", hang, timeout_s=0.01)()
    assert not slow.ok and slow.detail == "no answer within 0.01 s"
    assert report("x", [Check("mqtt", True, "up"), check]) == (
        503,
        {
            "status": "unavailable",
            "component": "x",
            "checks": {
                "mqtt": {"ok": True, "detail": "up"},
                "database": {"ok": False, "detail": check.detail},
            },
        },
    )
