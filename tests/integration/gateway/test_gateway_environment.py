"""Function settings set through the control-plane API take effect in the runtime (issue 12, items 1
and 5): environment variables reach the handler, and a change rolls out as a new generation of every
replica with no failed call; the memory limit fails the call that blows it, and the replica recovers;
calls over the concurrency limit are throttled (429 at the gateway).

The mesh (``gw_mesh``) serves ``probe-service`` on one replica; its ``env`` function returns a
variable's value in the serving runtime process and that process's pid.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import time
import zipfile
from typing import Any

import httpx
from gw_helpers import GatewayProcess

from dormant import Client
from dormant.errors import DormantError, Throttled, Unavailable

API = "/api/v1"
SERVICE = "probe-service"
RATE_PER_S = 100


async def _env(client: Client, name: str) -> dict[str, Any]:
    answer: dict[str, Any] = await client.call(SERVICE, "env", {"name": name}, timeout=10)
    return answer


async def _until_value(
    client: Client, name: str, value: str | None, *, within_s: float = 60
) -> dict[str, Any]:
    """Ask until the runtime answering has ``name`` = ``value`` (outside the measured traffic, an
    unavailable service is asked again: the fixture's pods may still be starting on a busy machine)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            answer = await _env(client, name)
        except (Unavailable, Throttled):
            answer = {"value": "(unavailable)"}
        if answer.get("value") == value:
            return answer
        assert time.monotonic() < deadline, f"{name} is still {answer.get('value')!r}, not {value!r}"
        await asyncio.sleep(0.1)


async def test_a_variable_set_through_the_api_reaches_the_handler_and_a_change_fails_no_call(
    gateway: GatewayProcess,
) -> None:
    headers = gateway.headers("admin")
    async with (
        httpx.AsyncClient(base_url=gateway.url, headers=headers) as http,
        Client(gateway.broker_url) as client,
    ):
        before = await _until_value(client, "GREETING", None)
        put = await http.put(
            f"{API}/functions/{SERVICE}/environment", json={"variables": {"GREETING": "hello"}}
        )
        assert put.status_code == 200, put.text
        first = await _until_value(client, "GREETING", "hello")
        assert first["pid"] != before["pid"]  # a new generation: a new runtime process
        # A runtime that crashes is restarted with the same variables.
        os.kill(first["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                restarted = await _env(client, "GREETING")
            except DormantError:
                restarted = {}
            if restarted.get("pid") not in (None, first["pid"]):
                break
            assert time.monotonic() < deadline, "the killed runtime was not restarted"
            await asyncio.sleep(0.2)
        assert restarted["value"] == "hello"

        # Steady calls at about RATE_PER_S while the variable changes: every one is answered.
        stop = asyncio.Event()
        answers: list[dict[str, Any]] = []
        failures: list[DormantError] = []

        async def traffic() -> None:
            async with Client(gateway.broker_url) as caller:
                started = time.monotonic()
                sent = 0
                pending: set[asyncio.Task[None]] = set()

                async def one() -> None:
                    try:
                        answers.append(await _env(caller, "GREETING"))
                    except DormantError as exc:
                        failures.append(exc)

                while not stop.is_set():
                    sent += 1
                    task = asyncio.create_task(one())
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    # Paced by the clock, not by answers: a slow answer does not slow the load.
                    await asyncio.sleep(max(0.0, started + sent / RATE_PER_S - time.monotonic()))
                await asyncio.gather(*pending)

        load = asyncio.create_task(traffic())
        await asyncio.sleep(1.0)
        put = await http.put(
            f"{API}/functions/{SERVICE}/environment", json={"variables": {"GREETING": "bye"}}
        )
        assert put.status_code == 200, put.text
        await _until_value(client, "GREETING", "bye")
        await asyncio.sleep(1.0)  # and calls go on after the switch
        stop.set()
        await load
        assert failures == []
        values = [answer.get("value") for answer in answers]
        assert len(values) >= 100 and {"hello", "bye"} <= set(values)
        # One process never sees two values: the change came with a new runtime.
        by_pid: dict[int, set[Any]] = {}
        for answer in answers:
            by_pid.setdefault(answer["pid"], set()).add(answer.get("value"))
        assert all(len(seen) == 1 for seen in by_pid.values()), by_pid

        # Unset: the next generation runs without it.
        put = await http.put(f"{API}/functions/{SERVICE}/environment", json={"variables": {}})
        assert put.status_code == 200, put.text
        await _until_value(client, "GREETING", None)


async def test_variables_that_could_not_take_effect_are_refused(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin")) as http:
        for name in ("DORMANT_BROKER_URL", "PYTHONPATH", "LD_PRELOAD", "pythonhome"):
            response = await http.put(
                f"{API}/functions/{SERVICE}/environment", json={"variables": {name: "x"}}
            )
            assert response.status_code == 400, (name, response.text)
            assert name in response.text and "reserved" in response.text
        nul = await http.put(f"{API}/functions/{SERVICE}/environment", json={"variables": {"A": "x\u0000y"}})
        assert nul.status_code == 400, nul.text


async def _until_new_runtime(client: Client, old_pid: int, *, within_s: float = 60) -> int:
    """The pid of the runtime answering once it is no longer ``old_pid`` (a new generation) and the
    previous one has drained: ten answers in a row from the same new process."""
    deadline = time.monotonic() + within_s
    streak: list[int] = []
    while True:
        try:
            pid = int((await _env(client, "X"))["pid"])
        except (Unavailable, Throttled):
            pid = old_pid
        streak = [*streak, pid] if streak and streak[-1] == pid else [pid]
        if pid != old_pid and len(streak) >= 10:
            return pid
        assert time.monotonic() < deadline, "no new runtime"
        await asyncio.sleep(0.05)


async def test_the_memory_limit_holds_and_the_replica_recovers(gateway: GatewayProcess) -> None:
    async with (
        httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin")) as http,
        Client(gateway.broker_url) as client,
    ):
        old_pid = (await _until_value(client, "X", None))["pid"]
        patched = await http.patch(f"{API}/functions/{SERVICE}", json={"memorySize": 128})
        assert patched.status_code == 200, patched.text
        limited_pid = await _until_new_runtime(client, old_pid)  # limits come with a new generation
        within = await client.call(SERVICE, "allocate", {"mb": 40}, timeout=30)
        assert within["pid"] == limited_pid
        # A call in flight on the replica when another blows the limit is delivered again, and answered.
        slow = asyncio.create_task(client.call(SERVICE, "sleep", {"ms": 1500}, timeout=60, call_id="slow-1"))
        await asyncio.sleep(0.3)
        blown = await http.post(f"{API}/functions/{SERVICE}.allocate/invoke", json={"mb": 600})
        assert blown.status_code == 500, blown.text
        error = blown.json()
        assert error["type"] == "SystemError" and "memory limit of 128 MB" in error["message"]
        assert error["details"]["memoryLimitMb"] == 128 and error["details"]["peakRssMb"] > 0
        assert await asyncio.wait_for(slow, 60) == {}
        recovered = await _until_new_runtime(client, limited_pid)
        assert (await client.call(SERVICE, "allocate", {"mb": 40}, timeout=30))["pid"] == recovered
        restored = await http.patch(f"{API}/functions/{SERVICE}", json={"memorySize": 256})
        assert restored.status_code == 200, restored.text
        await _until_new_runtime(client, recovered)  # leave the next test a settled replica


async def test_calls_over_the_concurrency_limit_are_throttled_and_counted(gateway: GatewayProcess) -> None:
    async with (
        httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin"), timeout=60) as http,
        Client(gateway.broker_url) as client,
    ):
        old_pid = (await _until_value(client, "X", None))["pid"]
        put = await http.put(f"{API}/functions/{SERVICE}/concurrency", json={"maxConcurrency": 2})
        assert put.status_code == 200, put.text
        await _until_new_runtime(client, old_pid)
        # Six calls at once, each holding its slot for 3 s: at most two run, the others are refused
        # before running (exactly two on a quiet machine; the unit tests pin the exact count).
        results = await asyncio.gather(
            *(client.call(SERVICE, "sleep", {"ms": 3000}, timeout=60) for _ in range(6)),
            return_exceptions=True,
        )
        throttled = [r for r in results if isinstance(r, Throttled)]
        ran = sum(1 for r in results if r == {})
        assert 1 <= ran <= 2 and ran + len(throttled) == 6, results
        assert throttled[0].details == {"limit": 2}
        # Through the gateway the refusals are 429s: six invocations at once, at most two run.
        statuses = [
            r.status_code
            for r in await asyncio.gather(
                *(http.post(f"{API}/functions/{SERVICE}.sleep/invoke", json={"ms": 3000}) for _ in range(6))
            )
        ]
        assert 1 <= statuses.count(200) <= 2 and statuses.count(429) == 6 - statuses.count(200), statuses
        limited_pid = (await _until_value(client, "X", None))["pid"]
        cleared = await http.put(f"{API}/functions/{SERVICE}/concurrency", json={})
        assert cleared.status_code == 200, cleared.text
        await _until_new_runtime(client, limited_pid)


# ------------------------------------------------------------------------------ live configuration


async def _config(client: Client, name: str) -> tuple[Any, int]:
    answer = await client.call(SERVICE, "config", {"name": name}, timeout=10)
    return json.loads(answer["valueJson"]), answer["pid"]


async def test_live_configuration_reaches_the_next_call_without_a_restart_and_fails_no_call(
    gateway: GatewayProcess,
) -> None:
    async with (
        httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin")) as http,
        Client(gateway.broker_url) as client,
    ):
        await _until_value(client, "GREETING", None)  # the replica serves (and no variable is set)
        put = await http.put(f"{API}/functions/{SERVICE}/config", json={"values": {"flag": True}})
        assert put.status_code == 200, put.text
        assert put.json()["delivered"] is True and put.json()["revision"] >= 1
        value, pid = await _config(client, "flag")  # the very next call sees it
        assert value is True

        # Steady calls at about RATE_PER_S while the configuration changes five times: every call is
        # answered, by the same runtime process, and each call made after a change returned sees it.
        stop = asyncio.Event()
        failures: list[DormantError] = []
        pids: set[int] = set()

        async def traffic() -> None:
            started, sent = time.monotonic(), 0
            pending: set[asyncio.Task[None]] = set()

            async def one() -> None:
                try:
                    pids.add((await _config(client, "flag"))[1])
                except DormantError as exc:
                    failures.append(exc)

            while not stop.is_set():
                sent += 1
                task = asyncio.create_task(one())
                pending.add(task)
                task.add_done_callback(pending.discard)
                await asyncio.sleep(max(0.0, started + sent / RATE_PER_S - time.monotonic()))
            await asyncio.gather(*pending)

        load = asyncio.create_task(traffic())
        for step in range(5):
            patch = await http.patch(f"{API}/functions/{SERVICE}/config", json={"values": {"flag": step}})
            assert patch.status_code == 200 and patch.json()["delivered"] is True, patch.text
            assert await _config(client, "flag") == (step, pid)
            await asyncio.sleep(0.2)
        stop.set()
        await load
        assert failures == [] and pids == {pid}  # no call failed; no new process

        # PATCH with null removes a name; GET shows what handlers see.
        patch = await http.patch(
            f"{API}/functions/{SERVICE}/config", json={"values": {"flag": None, "x": "y"}}
        )
        assert patch.status_code == 200, patch.text
        got = (await http.get(f"{API}/functions/{SERVICE}/config")).json()
        assert got["values"] == {"x": "y"} and got["published"] is True
        assert await _config(client, "flag") == (None, pid)
        assert await _config(client, "x") == ("y", pid)


async def test_live_configuration_refuses_what_it_cannot_carry(gateway: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin")) as http:
        url = f"{API}/functions/{SERVICE}/config"
        cases: list[tuple[Any, str]] = [
            ({"values": [1]}, "object"),
            ({"flag": True}, "unknown field"),
            ({"values": {"bad name": 1}}, "bad name"),
            ({"values": {"k": "x" * 70_000}}, "at most"),
            ({"values": {"db": "${SECRET:db-password}"}}, "secret"),
        ]
        before = (await http.get(url)).json()
        for body, why in cases:
            response = await http.put(url, json=body)
            assert response.status_code == 400, (body, response.text)
            assert why in response.text and response.json()["type"] == "ValidationError"
        assert (await http.get(url)).json()["revision"] == before["revision"]  # nothing stored
        missing = await http.put(f"{API}/functions/no-such-fn/config", json={"values": {}})
        assert missing.status_code == 404, missing.text
        reader = await http.put(url, json={"values": {}}, headers=gateway.headers("viewer"))
        assert reader.status_code == 403, reader.text


# ------------------------------------------------------------------------------ shared layers over HTTP

LAYER_MODULE = "dormant_http_layer_probe"


def _layer_zip(value: str, *, extra: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"python/{LAYER_MODULE}.py", f"VALUE = {value!r}\n")
        for name, text in (extra or {}).items():
            archive.writestr(name, text)
    return buffer.getvalue()


async def test_a_layer_published_and_attached_over_http_is_imported_by_the_handler(
    gateway: GatewayProcess,
) -> None:
    zip_type = {"Content-Type": "application/zip"}
    async with (
        httpx.AsyncClient(base_url=gateway.url, headers=gateway.headers("admin"), timeout=60) as http,
        Client(gateway.broker_url) as client,
    ):
        created = await http.post(f"{API}/layers?name=web-utils", content=_layer_zip("web"), headers=zip_type)
        assert created.status_code == 201, created.text
        assert created.json()["reference"] == "web-utils:1" and created.json()["created"] is True
        same = await http.post(
            f"{API}/layers/web-utils/versions", content=_layer_zip("web"), headers=zip_type
        )
        assert same.status_code == 200 and same.json()["reference"] == "web-utils:1"  # same content
        listed = (await http.get(f"{API}/layers")).json()["items"]
        assert "web-utils:1" in [item["reference"] for item in listed]
        versions = (await http.get(f"{API}/layers/web-utils/versions")).json()["items"]
        assert [v["version"] for v in versions] == [1] and versions[0]["unpackedBytes"] > 0

        # Refused, and nothing published: not a ZIP, an unsafe path, a wrong media type, no name,
        # an unknown layer to attach, more than five layers, a reader publishing.
        bad = await http.post(f"{API}/layers?name=web-utils", content=b"not a zip", headers=zip_type)
        assert bad.status_code == 400 and "not a ZIP" in bad.text, bad.text
        unsafe = _layer_zip("x", extra={"../escape.py": "X = 1\n"})
        escaped = await http.post(f"{API}/layers?name=web-utils", content=unsafe, headers=zip_type)
        assert escaped.status_code == 400 and "unsafe path" in escaped.text, escaped.text
        media = await http.post(
            f"{API}/layers?name=web-utils", content=_layer_zip("x"), headers={"Content-Type": "text/plain"}
        )
        assert media.status_code == 415, media.text
        nameless = await http.post(f"{API}/layers", content=_layer_zip("x"), headers=zip_type)
        assert nameless.status_code == 400 and "name the layer" in nameless.text
        reader = await http.post(
            f"{API}/layers?name=web-utils",
            content=_layer_zip("y"),
            headers={**zip_type, **gateway.headers("viewer")},
        )
        assert reader.status_code == 403, reader.text
        assert [
            v["version"] for v in (await http.get(f"{API}/layers/web-utils/versions")).json()["items"]
        ] == [1]
        unknown = await http.put(f"{API}/functions/{SERVICE}/layers", json={"layers": ["nope:1"]})
        assert unknown.status_code in (400, 404), unknown.text
        six = await http.put(f"{API}/functions/{SERVICE}/layers", json={"layers": ["web-utils:1"] * 6})
        assert six.status_code in (400, 422), six.text

        attached = await http.put(f"{API}/functions/{SERVICE}/layers", json={"layers": ["web-utils:1"]})
        assert attached.status_code == 200, attached.text
        assert [layer["reference"] for layer in attached.json()["layers"]] == ["web-utils:1"]
        assert (await http.get(f"{API}/functions/{SERVICE}/layers")).json()["layers"][0][
            "name"
        ] == "web-utils"
        # The replicas reload with the layer on their import path (a new generation).
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = await client.call(SERVICE, "module", {"name": LAYER_MODULE}, timeout=10)
            except DormantError:
                answer = {}
            if answer.get("value") == "web":
                break
            assert time.monotonic() < deadline, f"the layer's module is not importable: {answer}"
            await asyncio.sleep(0.2)
        assert "web-utils" in answer["file"] or LAYER_MODULE in answer["file"]
        detached = await http.put(f"{API}/functions/{SERVICE}/layers", json={"layers": []})
        assert detached.status_code == 200 and detached.json()["layers"] == []
