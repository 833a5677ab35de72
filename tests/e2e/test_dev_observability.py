"""``dormant dev`` records where its components serve ``/metrics``, ``/healthz`` and ``/readyz``
(``mesh.json`` "observability", and ``prometheus-targets.json`` for deploy/observability/prometheus-dev.yml),
and each answers there: the gateway, the controller and every pod."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .dev_mesh import running_dev

pytestmark = pytest.mark.slow


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.timeout(300)
def test_dev_records_each_components_endpoints_and_they_answer(tmp_path: Path) -> None:
    with running_dev(tmp_path) as dev:
        endpoints: dict[str, Any] = dev.mesh["observability"]  # type: ignore[assignment]
        assert set(endpoints) == {"gateway", "controller", "pods"}
        assert set(endpoints["pods"]) == {"dev-pod-1", "dev-pod-2"}
        assert endpoints["gateway"] == dev.mesh["gatewayUrl"]
        urls = [endpoints["gateway"], endpoints["controller"], *endpoints["pods"].values()]
        for url in urls:
            status, text = get(f"{url}/metrics")
            assert status == 200 and "process_resident_memory_bytes" in text, url
            status, text = get(f"{url}/healthz")
            assert status == 200 and json.loads(text)["status"] == "ok", url
        # The controller exports the per-function families and the pool; the pods their runtimes.
        controller = get(f"{endpoints['controller']}/metrics")[1]
        assert "dormant_controller_leader 1.0" in controller and "dormant_runners_active 2.0" in controller
        assert get(f"{endpoints['controller']}/readyz")[0] == 200
        pods = [get(f"{url}/metrics")[1] for url in endpoints["pods"].values()]
        assert (
            sum('dormant_pod_serving{service="user-service",version="1"} 1.0' in text for text in pods) == 1
        )
        assert "dormant_gateway_http_requests_total" in get(f"{endpoints['gateway']}/metrics")[1]
        # Prometheus file-based discovery: one target per endpoint, labelled by component.
        targets = json.loads((dev.state / "prometheus-targets.json").read_text())
        listed = {(t["labels"]["component"], t["labels"].get("pod")): t["targets"] for t in targets}
        assert listed[("controller", None)] == [endpoints["controller"].removeprefix("http://")]
        assert listed[("pod", "dev-pod-1")] == [endpoints["pods"]["dev-pod-1"].removeprefix("http://")]
        assert all(t["labels"]["__scheme__"] == "http" for t in targets)
        assert "/metrics" in dev.output  # the banner says where
