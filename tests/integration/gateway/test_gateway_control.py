"""The control-plane API on a real gateway: functions, versions (ZIP upload), aliases, deployments,
triggers, validation rules, pagination, rate limits, and the role matrix of the seed."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
from pathlib import Path

import httpx
import pytest
from gw_helpers import PROBE, GatewayProcess, new_gateway

API = "/api/v1"


def service_zip(source: Path, release: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(source.rglob("*")):
            if "__pycache__" in path.parts or "generated" in path.parts or not path.is_file():
                continue
            data = path.read_bytes()
            if release is not None and path.name == "probe.py":
                data = data.replace(b'RELEASE = "one"', f'RELEASE = "{release}"'.encode())
            archive.writestr(f"probe-service/{path.relative_to(source)}", data)
    return buffer.getvalue()


async def test_function_lifecycle_and_validation(gateway: GatewayProcess) -> None:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin")) as http:
        good = {
            "name": name,
            "runtime": "python3.11",
            "handler": "service.Handler",
            "memorySize": 512,
            "timeout": 60,
            "environment": {"LOG_LEVEL": "info"},
            "tags": {"team": "core"},
        }
        created = await http.post(f"{API}/functions", json=good)
        assert created.status_code == 201, created.text
        assert (await http.post(f"{API}/functions", json=good)).status_code == 409
        for bad in (
            {**good, "name": "Bad_Name"},
            {**good, "name": "x" * 65},
            {**good, "memorySize": 100},
            {**good, "memorySize": 200},
            {**good, "memorySize": 10304},
            {**good, "timeout": 0},
            {**good, "timeout": 901},
            {**good, "runtime": "cobol"},
            {**good, "handler": "nodots"},
            {**good, "environment": {"BIG": "x" * 4100}},
        ):
            response = await http.post(
                f"{API}/functions", json={**bad, "name": bad["name"] + "-b"} if bad["name"] == name else bad
            )
            assert response.status_code == 400, (bad, response.text)
            assert response.json()["details"]["errors"]
        updated = await http.patch(f"{API}/functions/{name}", json={"memorySize": 1024, "timeout": 900})
        assert updated.status_code == 200 and updated.json()["memorySize"] == 1024
        env = await http.put(f"{API}/functions/{name}/environment", json={"variables": {"A": "1"}})
        assert env.json()["variables"] == {"A": "1"}
        assert (
            await http.put(f"{API}/functions/{name}/environment", json={"variables": {"A": "x" * 4096}})
        ).status_code == 400
        conc = await http.put(
            f"{API}/functions/{name}/concurrency",
            json={"preProvisionedConcurrency": 5, "keepWarmEnabled": True, "keepWarmInterval": "PT5M"},
        )
        assert conc.status_code == 200 and conc.json()["preProvisionedConcurrency"] == 5
        detail = (await http.get(f"{API}/functions/{name}")).json()
        assert detail.get("environment") == {"A": "1"} and "metrics" in detail, detail
        assert (await http.delete(f"{API}/functions/{name}")).status_code == 204
        assert (await http.get(f"{API}/functions/{name}")).status_code == 404
        listed = (
            await http.get(f"{API}/functions", params={"includeDeleted": "true", "nameContains": name})
        ).json()
        assert [f["name"] for f in listed["items"]] == [name] and listed["items"][0]["deletedAt"]


async def test_list_filters_and_paginates(gateway: GatewayProcess) -> None:
    prefix = f"pg-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        for index in range(5):
            body = {
                "name": f"{prefix}-{index}",
                "runtime": "python3.11",
                "handler": "a.b",
                "tags": {"parity": "even" if index % 2 == 0 else "odd"},
            }
            assert (await http.post(f"{API}/functions", json=body)).status_code == 201
        names: list[str] = []
        cursor = None
        while True:
            params = {"nameContains": prefix, "limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await http.get(f"{API}/functions", params=params)).json()
            names += [f["name"] for f in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert names == [f"{prefix}-{i}" for i in range(5)]
        even = (
            await http.get(f"{API}/functions", params={"nameContains": prefix, "tag": "parity:even"})
        ).json()
        assert [f["name"] for f in even["items"]] == [f"{prefix}-0", f"{prefix}-2", f"{prefix}-4"]
        # Services published with the CLI are listed too, with default settings.
        listed = (await http.get(f"{API}/functions", params={"nameContains": "probe-service"})).json()
        assert [f["name"] for f in listed["items"]] == ["probe-service"]


async def _invoke_when_routed(
    http: httpx.AsyncClient, target: str, alias: str, body: dict[str, str]
) -> httpx.Response:
    """Invoke through ``alias`` once the published route table has it (503 until then), within 10 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        response = await http.post(f"{API}/functions/{target}/invoke", params={"alias": alias}, json=body)
        if response.status_code != 503 or loop.time() > deadline:
            return response
        await asyncio.sleep(0.05)


async def test_versions_upload_aliases_and_deployments(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin"), timeout=60) as http:
        url = f"{API}/functions/probe-service/versions"
        same = await http.post(url, content=service_zip(PROBE), headers={"content-type": "application/zip"})
        assert same.status_code == 200, same.text  # unchanged code: the latest version, not a new one
        assert same.json()["version"] == 1 and same.json()["created"] is False
        new = await http.post(
            url, content=service_zip(PROBE, "two"), headers={"content-type": "application/zip"}
        )
        assert new.status_code == 201, new.text
        assert new.json()["version"] == 2 and "count" in new.json()["functions"]
        assert (
            await http.post(url, content=b"not a zip", headers={"content-type": "application/zip"})
        ).status_code == 400
        assert (
            await http.post(url, content=b"{}", headers={"content-type": "application/json"})
        ).status_code == 415
        versions = (await http.get(url)).json()["items"]
        assert [v["version"] for v in versions] == [1, 2]
        assert (await http.get(f"{url}/v2")).json()["sha256"]
        alias = await http.post(
            f"{API}/functions/probe-service/aliases", json={"name": "beta", "weights": {"1": 90, "2": 10}}
        )
        assert alias.status_code == 201, alias.text
        assert (
            await http.post(
                f"{API}/functions/probe-service/aliases", json={"name": "bad", "weights": {"1": 90}}
            )
        ).status_code == 400
        moved = await http.put(f"{API}/functions/probe-service/aliases/beta", json={"version": 1})
        assert moved.json()["weights"] == {"1": 100}
        # The gateway routes by the table the controller publishes once it sees the change.
        echo = await _invoke_when_routed(http, "probe-service.echo", "beta", {"text": "a"})
        assert echo.status_code == 200 and echo.headers["x-dormant-version"] == "1"
        assert (
            await http.post(
                f"{API}/functions/probe-service.echo/invoke", params={"alias": "nope"}, json={"text": "a"}
            )
        ).status_code == 404
        assert (await http.delete(f"{url}/1")).status_code == 409  # in use
        assert (await http.delete(f"{url}/2")).status_code == 204
        assert (await http.get(f"{url}/2")).json()["status"] == "deprecated"
        deployment = (await http.get(f"{API}/deployments/probe-service")).json()
        assert deployment["version"] == 1 and deployment["state"] in ("running", "pending")
        staged = await http.post(
            f"{API}/deployments",
            json={"functionName": "probe-service", "version": "v2", "environment": "staging"},
        )
        assert staged.status_code == 201 and staged.json()["alias"] == "staging"
        canary = await http.post(
            f"{API}/deployments", json={"functionName": "probe-service", "strategy": "Canary"}
        )
        assert canary.status_code == 400


async def test_triggers_crud(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        url = f"{API}/functions/probe-service/triggers"
        cron = await http.post(
            url,
            json={
                "type": "cron",
                "function": "count",
                "enabled": False,
                "config": {
                    "schedule": "0 */5 * * * *",
                    "timezone": "Europe/Berlin",
                    "input": {"key": "crud"},
                },
            },
        )
        assert cron.status_code == 201, cron.text
        trigger_id = cron.json()["id"]
        for bad in (
            {"schedule": "every minute"},
            {"schedule": "rate(5 minutes)", "timezone": "Mars/Base"},
            {"schedule": "* * * * *", "surprise": 1},
        ):
            assert (
                await http.post(url, json={"type": "cron", "function": "count", "config": bad})
            ).status_code == 400
        assert (
            await http.post(
                url, json={"type": "queue", "function": "count", "config": {"queue": "q", "batchSize": 101}}
            )
        ).status_code == 400
        # This gateway has no RabbitMQ: a valid queue trigger is refused, not accepted and left idle.
        no_broker = await http.post(
            url, json={"type": "queue", "function": "count", "config": {"queue": "q"}}
        )
        assert no_broker.status_code == 400 and "RabbitMQ" in no_broker.json()["message"], no_broker.text
        enabled = await http.put(f"{url}/{trigger_id}/enable")
        assert enabled.json()["enabled"] is True
        disabled = await http.put(f"{url}/{trigger_id}/disable")
        assert disabled.json()["enabled"] is False
        assert trigger_id in [t["id"] for t in (await http.get(url)).json()["items"]]
        assert (await http.delete(f"{url}/{trigger_id}")).status_code == 204
        assert (await http.get(f"{url}/{trigger_id}")).status_code == 404


async def test_http_trigger_routes_a_path_to_a_function(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        prefix = uuid.uuid4().hex[:6]
        created = await http.post(
            f"{API}/functions/probe-service/triggers",
            json={
                "type": "http",
                "function": "echo",
                "config": {
                    "methods": ["POST"],
                    "path": f"/{prefix}/{{proxy+}}",
                    "auth": "none",
                    "cors": {"allowOrigins": ["https://app.example"]},
                },
            },
        )
        assert created.status_code == 201, created.text
        # The probe's echo rejects the HTTP event (it has no "text"): the request reached the function.
        response = await http.post(
            f"/http/{prefix}/a/b", content=b"hello", headers={"Origin": "https://app.example"}
        )
        assert response.status_code == 400 and response.json()["type"] == "ValidationError"
        assert response.headers["access-control-allow-origin"] == "https://app.example"
        preflight = await http.options(
            f"/http/{prefix}/x",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 204
        assert (
            "POST" in preflight.headers["access-control-allow-methods"]
            or "*" in preflight.headers["access-control-allow-methods"]
        )
        assert (await http.post(f"/http/{prefix}-none/x")).status_code == 404


# The seed's table: what each role may do.
ALLOWED = {
    "admin": {
        "read",
        "create",
        "update",
        "environment",
        "concurrency",
        "delete",
        "upload",
        "delete-version",
        "alias",
        "prod-alias",
        "deploy-staging",
        "deploy-prod",
        "rollback",
        "triggers",
        "toggle",
        "invoke",
    },
    "developer": {
        "read",
        "create",
        "update",
        "environment",
        "concurrency",
        "upload",
        "alias",
        "deploy-staging",
        "triggers",
        "toggle",
        "invoke",
    },
    "operator": {
        "read",
        "concurrency",
        "alias",
        "prod-alias",
        "deploy-staging",
        "deploy-prod",
        "rollback",
        "toggle",
        "invoke",
    },
    "viewer": {"read"},
}


@pytest.mark.parametrize("role", sorted(ALLOWED))
async def test_role_matrix(gateway: GatewayProcess, role: str) -> None:
    suffix = f"{role[:3]}-{uuid.uuid4().hex[:6]}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin"), timeout=30) as admin:
        victim = f"rm-{suffix}"
        body = {"name": victim, "runtime": "python3.11", "handler": "a.b"}
        assert (await admin.post(f"{API}/functions", json=body)).status_code == 201
        await admin.post(f"{API}/functions/probe-service/aliases", json={"name": "production", "version": 1})
        trig = await admin.post(
            f"{API}/functions/probe-service/triggers",
            json={
                "type": "cron",
                "function": "count",
                "enabled": False,
                "config": {"schedule": "rate(1 hour)"},
            },
        )
        trigger_id = trig.json()["id"]
    fn = f"{API}/functions/{victim}"
    probe = f"{API}/functions/probe-service"
    actions = {
        "read": ("GET", f"{API}/functions", None),
        "create": (
            "POST",
            f"{API}/functions",
            {"name": f"new-{suffix}", "runtime": "python3.11", "handler": "a.b"},
        ),
        "update": ("PATCH", fn, {"timeout": 10}),
        "environment": ("PUT", f"{fn}/environment", {"variables": {"X": "1"}}),
        "concurrency": ("PUT", f"{fn}/concurrency", {"preProvisionedConcurrency": 1}),
        "upload": ("POST", f"{probe}/versions", b"not a zip"),
        "delete-version": ("DELETE", f"{probe}/versions/999", None),
        "alias": ("POST", f"{probe}/aliases", {"name": f"a-{suffix}", "version": 1}),
        "prod-alias": ("PUT", f"{probe}/aliases/production", {"version": 1}),
        "deploy-staging": (
            "POST",
            f"{API}/deployments",
            {"functionName": "probe-service", "version": 1, "environment": "staging"},
        ),
        "deploy-prod": ("POST", f"{API}/deployments", {"functionName": "probe-service", "version": 1}),
        "rollback": ("POST", f"{API}/deployments/probe-service/rollback", {"version": 1}),
        "triggers": (
            "POST",
            f"{probe}/triggers",
            {"type": "cron", "function": "count", "enabled": False, "config": {"schedule": "rate(1 hour)"}},
        ),
        "toggle": ("PUT", f"{probe}/triggers/{trigger_id}/disable", None),
        "invoke": ("POST", f"{API}/functions/probe-service.echo/invoke", {"text": "hi"}),
        "delete": ("DELETE", fn, None),
    }
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers(role), timeout=30) as http:
        for action, (method, url, payload) in actions.items():
            if isinstance(payload, bytes):
                response = await http.request(
                    method, url, content=payload, headers={"content-type": "application/zip"}
                )
            else:
                response = await http.request(method, url, json=payload)
            if action in ALLOWED[role]:
                assert response.status_code not in (401, 403) and response.status_code < 500, (
                    role,
                    action,
                    response.status_code,
                    response.text,
                )
            else:
                assert response.status_code == 403, (role, action, response.status_code, response.text)
                assert response.json()["type"] == "Forbidden"


async def test_management_rate_limit_answers_429_with_retry_after(gw_mesh: object, gw_tmp: Path) -> None:
    process = new_gateway(gw_mesh, gw_tmp, "gw-limited", DORMANT_RATE_MANAGE_PER_MIN="2")  # type: ignore[arg-type]
    process.extra_env["DORMANT_RATE_MANAGE_PER_MIN"] = "2"
    try:
        await process.start()
        async with httpx.AsyncClient(
            base_url=process.url, headers=process.headers("developer", sub="busy")
        ) as http:
            statuses = []
            for _ in range(3):
                response = await http.post(f"{API}/functions", json={"name": "Bad!"})
                statuses.append(response.status_code)
            assert statuses == [400, 400, 429]
            assert int(response.headers["retry-after"]) >= 1
            assert response.json()["type"] == "TooManyRequests"
        async with httpx.AsyncClient(
            base_url=process.url, headers=process.headers("developer", sub="calm")
        ) as http:
            assert (await http.post(f"{API}/functions", json={"name": "Bad!"})).status_code == 400  # per user
    finally:
        process.stop()


async def test_a_deleted_function_is_restored_through_the_api(gateway: GatewayProcess) -> None:
    name = f"fn-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin")) as http:
        body = {
            "name": name,
            "runtime": "python3.11",
            "handler": "service.Handler",
            "environment": {"A": "1"},
        }
        assert (await http.post(f"{API}/functions", json=body)).status_code == 201
        assert (await http.post(f"{API}/functions/{name}/restore")).status_code == 409  # not deleted
        assert (await http.delete(f"{API}/functions/{name}")).status_code == 204
        assert (await http.get(f"{API}/functions/{name}")).status_code == 404
        restored = await http.post(f"{API}/functions/{name}/restore")
        assert restored.status_code == 200, restored.text
        assert restored.json()["name"] == name
        again = await http.get(f"{API}/functions/{name}")
        assert again.status_code == 200 and again.json()["environment"] == {"A": "1"}
        assert (await http.post(f"{API}/functions/nope-{name}/restore")).status_code == 404
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        assert (await http.post(f"{API}/functions/{name}/restore")).status_code == 403  # admins only
