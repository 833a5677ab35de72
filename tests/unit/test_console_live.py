"""The console's live figures (``dormant_gateway.console.live.LiveStats``): windows summed per version
over the last seconds, error rates counted as a rollout judges them, p99 from the histogram, old windows
dropped; and the console's page and script, which must render data as text only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson

from dormant_gateway.console import ASSETS, SECURITY_HEADERS
from dormant_gateway.console.live import HISTORY_S, KEEP_S, SPAN_S, LiveStats

SERVICE = "probe-service"
NOW = 1_700_000_000.0
STATIC = Path(__file__).resolve().parents[2] / "gateway" / "dormant_gateway" / "console" / "static"


def window(calls: int, *, errors: dict[str, int] | None = None, slow: int = 0) -> bytes:
    """One published window: ``calls`` answered within 10 ms, but ``slow`` of them past the last bound."""
    errors = errors or {}
    fast = calls - slow
    return orjson.dumps(
        {
            "calls": calls,
            "ok": calls - sum(errors.values()),
            "errors": errors,
            "latency": {"le": [10, 100], "counts": [fast, 0, slow]},
        }
    )


def feed(stats: LiveStats, version: int, pod: str, seconds: range, payload: bytes) -> None:
    """One window a second from ``pod``, arriving at NOW - s for each s in ``seconds``."""
    for ago in seconds:
        assert stats.add(f"mesh/stats/{SERVICE}/v{version}/{pod}", payload, now=NOW - ago + 0.3)


def test_figures_sum_every_pod_of_a_version_over_the_span() -> None:
    stats = LiveStats()
    feed(stats, 1, "pod-a", range(30), window(10))
    feed(stats, 1, "pod-b", range(30), window(20))
    feed(stats, 2, "pod-c", range(30), window(4, errors={"SystemError": 1, "ValidationError": 1}))
    live = stats.service(SERVICE, now=NOW + 0.5)
    assert sorted(live) == [1, 2]
    v1, v2 = live[1], live[2]
    assert v1["now"]["rate"] == 30.0 and v1["now"]["calls"] == 30 * SPAN_S
    assert v1["pods"] == ["pod-a", "pod-b"]
    assert v1["total"]["calls"] == 30 * 30 and v1["now"]["p99Ms"] == 10.0
    # A caller's ValidationError is not the version's fault: 1 failure in 3 judged calls.
    assert v2["now"]["errors"] == SPAN_S and v2["now"]["errorRate"] == round(1 / 3, 4)
    assert len(v1["series"]) == HISTORY_S and v1["series"][-1] == v1["now"]
    # The points before the first window are empty; those after it hold it.
    assert v1["series"][0]["calls"] == 0 and v1["series"][-30]["calls"] == 30


def test_p99_past_the_histogram_is_inf_and_no_calls_is_none() -> None:
    stats = LiveStats()
    feed(stats, 3, "pod-a", range(5), window(100, slow=5))
    feed(stats, 4, "pod-b", range(5), window(0))
    live = stats.service(SERVICE, now=NOW + 0.5)
    assert live[3]["now"]["p99Ms"] == "inf"
    assert live[4]["now"]["p99Ms"] is None and live[4]["now"]["rate"] == 0.0
    assert orjson.loads(orjson.dumps({str(v): f for v, f in live.items()}))  # plain JSON, as served


def test_old_windows_are_dropped_and_other_services_and_topics_ignored() -> None:
    stats = LiveStats()
    feed(stats, 1, "pod-a", range(int(KEEP_S) + 10, int(KEEP_S) + 20), window(5))
    assert stats.add("mesh/stats/other/v1/pod-x", window(7), now=NOW)
    assert not stats.add("mesh/routes/probe-service", window(7), now=NOW)
    assert not stats.add(f"mesh/stats/{SERVICE}/v1/pod-a", b"not json", now=NOW)
    assert not stats.add(f"mesh/stats/{SERVICE}/v1/pod-a", b"[1, 2]", now=NOW)
    assert stats.service(SERVICE, now=NOW) == {}
    assert list(stats.service("other", now=NOW)) == [1]


def test_a_version_silent_for_the_last_minute_is_not_listed() -> None:
    stats = LiveStats()
    feed(stats, 1, "pod-a", range(HISTORY_S + 5, HISTORY_S + 15), window(5))
    assert stats.service(SERVICE, now=NOW) == {}


def _static(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def test_the_script_never_turns_data_into_html() -> None:
    script = _static("console.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink
    assert 'setAttribute("on' not in script and ".href" not in script and ".src" not in script


def test_the_page_loads_nothing_from_elsewhere_and_no_inline_code() -> None:
    files: dict[str, Any] = {name: _static(name) for name in ASSETS}
    assert set(p.name for p in STATIC.iterdir()) == set(ASSETS)
    for name, text in files.items():
        elsewhere = re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text.replace("http://www.w3.org/", ""))
        assert elsewhere is None, (name, elsewhere)
    page = files["index.html"]
    assert re.findall(r"<script[^>]*>", page) == ['<script src="console.js" defer>']
    assert " style=" not in page  # inline styles would need 'unsafe-inline'
    assert not re.search(r"<[^>]+\son[a-z]+=", page)  # no inline event handlers
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
