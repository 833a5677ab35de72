"""``PUT /api/v1/functions/{name}/scaling`` on a real gateway (issue 12, item 6): stored as the catalog
checks it, unknown keys and out-of-range values refused naming the key, readable back, and only for
roles that may set concurrency."""

from __future__ import annotations

import uuid

import httpx
from gw_helpers import GatewayProcess

API = "/api/v1"


async def test_scaling_settings_are_checked_stored_and_read_back(gateway: GatewayProcess) -> None:
    name = f"sc-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin")) as http:
        body = {"name": name, "runtime": "python3.11", "handler": "service.Handler"}
        assert (await http.post(f"{API}/functions", json=body)).status_code == 201
        assert (await http.get(f"{API}/functions/{name}/scaling")).json() == {
            "function": name,
            "scaling": None,
        }
        settings = {
            "minInstances": 0,
            "maxInstances": 4,
            "targetConcurrency": 3,
            "scaleDownCooldown": "PT2M",
            "schedules": [{"cron": "* 8-17 * * 1-5", "minInstances": 2}],
        }
        put = await http.put(f"{API}/functions/{name}/scaling", json=settings)
        assert put.status_code == 200, put.text
        stored = put.json()["scaling"]
        assert stored["scaleDownCooldown"] == "PT120S" and stored["scaleUpCooldown"] == "PT30S"
        assert (await http.get(f"{API}/functions/{name}/scaling")).json()["scaling"] == stored
        for bad, path in (
            ({"minInstances": 1, "keepWarm": True}, "/keepWarm"),
            ({"minInstances": 3, "maxInstances": 2}, "/maxInstances"),
            ({"targetConcurrency": 0}, "/targetConcurrency"),
            ({"scaleUpCooldown": "later"}, "/scaleUpCooldown"),
            ({"schedules": [{"cron": "every day", "minInstances": 1}]}, "/schedules/0/cron"),
        ):
            refused = await http.put(f"{API}/functions/{name}/scaling", json=bad)
            assert refused.status_code == 400, (bad, refused.text)
            assert refused.json()["details"]["errors"][0]["path"] == path, refused.text
        assert (await http.get(f"{API}/functions/{name}/scaling")).json()["scaling"] == stored
        missing = await http.put(f"{API}/functions/no-such-{name}/scaling", json={"minInstances": 1})
        assert missing.status_code == 404
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("viewer")) as http:
        assert (
            await http.put(f"{API}/functions/{name}/scaling", json={"minInstances": 1})
        ).status_code == 403
        assert (await http.get(f"{API}/functions/{name}/scaling")).status_code == 200
