"""Invoke endpoints on a real gateway, mesh and catalog: results, typed errors as status codes, idempotency,
CloudEvents, SSE, the dev issuer's JWKS, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from gw_helpers import GatewayProcess

from dormant import Client
from dormant.errors import Conflict, Unauthenticated
from dormant_cli import main as cli

API = "/api/v1"


async def test_health_needs_no_token_and_the_api_does(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/health")).json() == {"status": "ok"}
        response = await http.get(f"{API}/functions")
        assert response.status_code == 401
        assert response.json()["type"] == "Unauthenticated"
        bad = await http.get(f"{API}/functions", headers={"Authorization": "Bearer not-a-jwt"})
        assert bad.status_code == 401


async def test_tokens_are_verified_against_the_served_jwks(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        config = (await http.get("/.well-known/openid-configuration")).json()
        jwks = (
            await http.get(config["jwks_uri"].replace(config["jwks_uri"].split("/.well-known")[0], ""))
        ).json()
        assert jwks["keys"][0]["kty"] == "EC"
        assert "d" not in jwks["keys"][0]
        expired = gateway.token("admin", ttl_s=-60)
        response = await http.get(f"{API}/functions", headers={"Authorization": f"Bearer {expired}"})
        assert response.status_code == 401
        assert "expired" in response.json()["message"]


async def test_invoke_the_example_returns_its_result(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        email = f"{uuid.uuid4().hex[:8]}@example.com"
        response = await http.post(
            f"{API}/functions/user-service.createUser/invoke", json={"email": email, "name": "Ann"}
        )
        assert response.status_code == 200, response.text
        assert response.json()["userId"]
        assert response.headers["x-dormant-call-id"]


async def test_the_seed_request_form_gets_the_seed_response_form(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        response = await http.post(
            f"{API}/functions/probe-service.echo/invoke",
            json={"payload": '{"text": "hi"}', "invocationType": "RequestResponse"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["statusCode"] == 200
        assert '"text":"hi"' in body["body"]


async def test_typed_errors_map_to_status_codes(gateway: GatewayProcess) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        create = f"{API}/functions/user-service.createUser/invoke"
        cases = [
            (create, {"email": "nope", "name": "Ann"}, {}, 400, "ValidationError"),
            (create, {"email": email, "name": "Ann"}, {}, 200, None),
            (create, {"email": email, "name": "Ann"}, {}, 422, "BusinessLogicError"),
            (f"{API}/functions/probe-service.noSuchThing/invoke", {}, {}, 404, "NotFound"),
            (f"{API}/functions/probe-service.explode/invoke", {}, {}, 500, "SystemError"),
            (
                f"{API}/functions/probe-service.sleep/invoke",
                {"ms": 3000},
                {"timeout": "0.5"},
                504,
                "TimeoutError",
            ),
            # A service that does not exist is 404 (503 is for one that exists and nothing serves:
            # test_gateway_hardening.py).
            (f"{API}/functions/nobody-serves-this.echo/invoke", {}, {"timeout": "5"}, 404, "NotFound"),
        ]
        for url, body, params, status, error_type in cases:
            response = await http.post(url, json=body, params=params)
            assert response.status_code == status, (url, response.text)
            if error_type is not None:
                assert response.json()["type"] == error_type
        assert (
            "hunter2" not in (await http.post(f"{API}/functions/probe-service.explode/invoke", json={})).text
        )
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("viewer")) as http:
        response = await http.post(f"{API}/functions/probe-service.echo/invoke", json={"text": "x"})
        assert response.status_code == 403
        assert response.json()["type"] == "Forbidden"


async def test_the_same_idempotency_key_runs_the_handler_once(gateway: GatewayProcess) -> None:
    key = f"k-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        url = f"{API}/functions/probe-service.count/invoke"
        headers = {"Idempotency-Key": "same-key-1"}
        first = await http.post(url, json={"key": key}, headers=headers)
        second = await http.post(url, json={"key": key}, headers=headers)
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        assert first.json() == second.json() == {"key": key, "count": 1}
        assert first.headers["x-dormant-call-id"] == second.headers["x-dormant-call-id"]
        peek = await http.post(url, json={"key": key, "peek": True})
        assert peek.json()["count"] == 1


async def test_cloudevents_binary_and_structured_are_accepted(gateway: GatewayProcess) -> None:
    key = f"ce-{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        url = f"{API}/functions/probe-service.count/invoke"
        binary = await http.post(
            url,
            json={"key": key},
            headers={"ce-specversion": "1.0", "ce-id": "e1", "ce-source": "/test", "ce-type": "t.count"},
        )
        assert binary.status_code == 200, binary.text
        assert binary.json()["count"] == 1
        event = {"specversion": "1.0", "id": "e2", "source": "/test", "type": "t.count", "data": {"key": key}}
        structured = await http.post(
            url,
            content=httpx.Request("POST", url, json=event).content,
            headers={"content-type": "application/cloudevents+json"},
        )
        assert structured.status_code == 200, structured.text
        assert structured.json()["count"] == 2
        again = await http.post(
            url,
            content=httpx.Request("POST", url, json=event).content,
            headers={"content-type": "application/cloudevents+json"},
        )
        assert again.json()["count"] == 2  # the same event (source, id) is the same call


async def test_invoke_stream_sends_server_sent_events(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("operator")) as http:
        response = await http.post(f"{API}/functions/probe-service.echo/invoke-stream", json={"text": "sse"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [block for block in response.text.split("\n\n") if block.startswith("event:")]
        assert [e.split("\n")[0] for e in events] == ["event: accepted", "event: result"]
        assert '"text":"sse"' in events[1]


async def test_request_limits(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("developer")) as http:
        big = b'{"text": "' + b"x" * (256 * 1024) + b'"}'
        response = await http.post(f"{API}/functions/probe-service.echo/invoke-async", content=big)
        assert response.status_code == 413
        response = await http.post(f"{API}/functions/probe-service.echo/invoke", content=b"{not json")
        assert response.status_code == 400
        response = await http.post(f"{API}/functions/Bad_Name/invoke", json={})
        assert response.status_code == 400


async def test_openapi_document_lists_the_api(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        document = (await http.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.")
    for path in ("/api/v1/functions", "/api/v1/functions/{name}/invoke", "/api/v1/deployments"):
        assert path in document["paths"]


# ------------------------------------------------------------------------------ the audit log


def _history(catalog_url: str, *flags: str) -> list[dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli(
            ["history", "user-service", "--json", "--limit", "500", "--catalog-url", catalog_url, *flags]
        )
    assert code == 0, out.getvalue()
    entries: list[dict[str, Any]] = json.loads(out.getvalue())["audit"]
    return entries


async def test_executions_refusals_and_security_events_reach_the_audit_log(gateway: GatewayProcess) -> None:
    run = uuid.uuid4().hex[:10]
    call_id = f"audit-{run}"
    async with Client(gateway.broker_url) as client:  # as "tester" (the module's caller token)
        await client.call(
            "user-service", "createUser", {"email": f"a-{run}@example.com", "name": "Au"}, call_id=call_id
        )
        with pytest.raises(Conflict):  # the same callId with another input
            await client.call(
                "user-service", "createUser", {"email": f"b-{run}@example.com", "name": "Au"}, call_id=call_id
            )
    async with Client(gateway.broker_url, authorization="") as anonymous:
        with pytest.raises(Unauthenticated):
            await anonymous.call("user-service", "createUser", {"email": f"c-{run}@example.com", "name": "C"})
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        forged = await http.get(f"{API}/functions/user-service", headers={"Authorization": "Bearer forged"})
        assert forged.status_code == 401
        viewer = await http.put(
            f"{API}/functions/user-service/config", json={"values": {}}, headers=gateway.headers("viewer")
        )
        assert viewer.status_code == 403

    def found(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for e in entries:
            d = e["detail"]
            if e["kind"] == "execution" and d.get("callId") == call_id:
                seen["execution"] = e
            elif e["action"] == "callid-reused" and d.get("callId") == call_id:
                seen["reused"] = e
            elif e["kind"] == "authorization" and d.get("error") == "Unauthenticated":
                seen.setdefault("unauthenticated", e)
            elif e["action"] == "token-refused" and d.get("method") == "GET":
                seen["token"] = e
            elif e["kind"] == "authorization" and d.get("action") == "set-environment":
                seen["role"] = e
        return seen

    # Written in batches (about a second): wait for every kind to be in.
    deadline = time.monotonic() + 60
    while len(seen := found(await asyncio.to_thread(_history, gateway.catalog_url, "--kind", "all"))) < 5:
        assert time.monotonic() < deadline, f"only {sorted(seen)} reached the audit log"
        await asyncio.sleep(0.5)
    execution = seen["execution"]
    assert execution["actor"] == "tester" and execution["detail"]["ok"] is True
    assert execution["detail"]["function"] == "createUser" and execution["detail"]["durationMs"] >= 0
    assert seen["reused"]["kind"] == "security" and seen["reused"]["actor"] == "tester"
    assert seen["unauthenticated"]["actor"] == "anonymous"
    assert seen["token"]["kind"] == "security" and "forged" not in json.dumps(seen["token"])
    assert seen["role"]["actor"] == "tester" and seen["role"]["detail"]["roles"] == ["viewer"]
    # No input, output or token in any entry.
    text = json.dumps(await asyncio.to_thread(_history, gateway.catalog_url, "--kind", "all"))
    assert f"a-{run}@example.com" not in text and "Bearer" not in text

    # Filters: the default leaves executions out; --kind and --actor narrow.
    default = await asyncio.to_thread(_history, gateway.catalog_url)
    assert all(e["kind"] != "execution" for e in default) and any(e["kind"] == "security" for e in default)
    mine = await asyncio.to_thread(_history, gateway.catalog_url, "--kind", "execution", "--actor", "tester")
    assert mine and all(e["kind"] == "execution" and e["actor"] == "tester" for e in mine)
    assert any(e["detail"].get("callId") == call_id for e in mine)
