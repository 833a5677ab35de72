"""The Node base runtime (runtimes/node) standalone on a real Mosquitto and Postgres.

A small TypeScript service (``node_app/``) is compiled with the runtime's tsc, served by
``node runtimes/node/dist/main.js --app-dir``, and called with ``dormant.Client`` and raw MQTT: answers,
validation and typed errors, callId de-duplication in the catalog's ``call_results`` (with the same
input fingerprint as the Python runtime's), the envelope form, refused reply topics and deadlines.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import psycopg
import pytest
import pytest_asyncio

from dormant import Client, errors
from dormant.transport import Message, connect_transport
from dormant_catalog import open_catalog
from dormant_catalog.calls import fingerprint
from dormant_local import MosquittoProcess

ROOT = Path(__file__).resolve().parents[2]
NODE_RT = ROOT / "runtimes" / "node"
MAIN = NODE_RT / "dist" / "main.js"
APP_SOURCE = Path(__file__).parent / "node_app"
SERVICE = "node-echo"



@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test service compiled into an app dir laid out as `dormant generate` lays it out."""
    assert shutil.which("node") and MAIN.exists() and (NODE_RT / "node_modules" / ".bin" / "tsc").exists(), (
        "the Node runtime is not built: run deploy/bootstrap.sh"
    )
    app = tmp_path_factory.mktemp("node-app")
    (app / "src").mkdir()
    (app / "generated").mkdir()
    shutil.copy(APP_SOURCE / "service.ts", app / "src" / "service.ts")
    interface = json.loads((APP_SOURCE / "interface.json").read_text())
    (app / "generated" / "interface.json").write_text(json.dumps(interface))
    tsconfig = {
        "compilerOptions": {
            "target": "ES2022",
            "module": "commonjs",
            "strict": True,
            "outDir": "dist",
            "rootDir": "src",
            "baseUrl": ".",
            "paths": {"@dormant/runtime": [str(NODE_RT / "dist" / "index.d.ts")]},
            "skipLibCheck": True,
            "types": [],
        },
        "include": ["src"],
    }
    (app / "tsconfig.json").write_text(json.dumps(tsconfig))
    subprocess.run([str(NODE_RT / "node_modules" / ".bin" / "tsc"), "-p", str(app)], check=True, timeout=120)
    assert (app / "dist" / "service.js").exists()
    return app


@pytest_asyncio.fixture
async def migrated(catalog_url: str) -> str:
    catalog = await open_catalog(catalog_url)  # creates call_results (the runtime does not migrate)
    await catalog.close()
    return catalog_url


class NodeRuntime:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest_asyncio.fixture
async def runtime(
    app_dir: Path, broker: MosquittoProcess, migrated: str, tmp_path: Path
) -> AsyncIterator[NodeRuntime]:
    log = tmp_path / "node-runtime.log"
    env = {**os.environ, "DORMANT_BROKER_URL": broker.url, "DORMANT_CATALOG_URL": migrated}
    env["DORMANT_POD_ID"] = f"test-{uuid.uuid4().hex[:6]}"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - a child that outlives this call, not awaited here
            ["node", str(MAIN), "--app-dir", str(app_dir)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    node = NodeRuntime(process, log)
    try:
        await _wait_serving(broker.url, node)
        yield node
    finally:
        if os.environ.get("NODE_RT_DEBUG"):
            print(node.output()[-6000:])
        process.terminate()
        try:
            code = process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
        assert code == 0, node.output()[-3000:]


async def _wait_serving(broker_url: str, node: NodeRuntime, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    async with Client(broker_url) as client:
        while loop.time() < end:
            assert node.process.poll() is None, node.output()[-3000:]
            try:
                await client.call(SERVICE, "readinessProbe", {}, timeout=1)
            except errors.NotFound as exc:
                if not (isinstance(exc.details, dict) and exc.details.get("noSubscribers")):
                    return
            except errors.DormantError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the Node runtime is not serving:\n" + node.output()[-3000:])


async def test_answers_and_errors(broker: MosquittoProcess, runtime: NodeRuntime) -> None:
    async with Client(broker.url) as client:
        answer = await client.call(SERVICE, "echo", {"text": "hi", "count": 2}, headers={"x-probe": "p1"})
        assert answer["text"] == "hi" and answer["count"] == 2 and answer["probe"] == "p1"
        assert answer["runtime"] == "node" and len(answer["callId"]) == 32

        with pytest.raises(errors.ValidationError) as invalid:
            await client.call(SERVICE, "echo", {"text": "", "count": -1, "extra": 1})
        assert invalid.value.details == {
            "errors": [
                {"path": "", "message": "Additional properties are not allowed ('extra' was unexpected)"},
                {"path": "count", "message": "-1 is less than the minimum of 0"},
                {"path": "text", "message": "'' is too short"},
            ]
        }
        with pytest.raises(errors.ValidationError):
            await client.call(SERVICE, "echo", {"text": "x", "when": "1700000000"})  # not a date-time
        with pytest.raises(errors.BusinessLogicError) as business:
            await client.call(SERVICE, "fail", {"kind": "business", "message": "no way"})
        assert (business.value.message, business.value.details) == ("no way", {"reason": "asked"})
        with pytest.raises(errors.NotFound):
            await client.call(SERVICE, "fail", {"kind": "notfound", "message": "gone"})
        with pytest.raises(errors.Forbidden):
            await client.call(SERVICE, "fail", {"kind": "forbidden", "message": "not you"})
        marker = f"secret-{uuid.uuid4().hex}"
        with pytest.raises(errors.SystemError) as system:
            await client.call(SERVICE, "fail", {"kind": "system", "message": marker})
        assert marker not in system.value.message and marker not in json.dumps(system.value.details)
        with pytest.raises(errors.NotFound) as missing:
            await client.call(SERVICE, "nope", {})
        assert missing.value.details == {"functions": ["allocate", "echo", "fail", "sleep", "tally"]}
        with pytest.raises(errors.TimeoutError):
            await client.call(SERVICE, "sleep", {"ms": 5000}, timeout=20)  # its own timeout is 2 s
    assert marker in runtime.output()  # the traceback stays in the runtime's log


async def test_duplicate_call_ids(broker: MosquittoProcess, runtime: NodeRuntime, migrated: str) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    async with Client(broker.url) as client:
        first = await client.call(SERVICE, "tally", {"key": key}, call_id="dup-1")
        again = await client.call(SERVICE, "tally", {"key": key}, call_id="dup-1")
        assert first == again == {"key": key, "runs": 1}
        with pytest.raises(errors.Conflict):
            await client.call(SERVICE, "tally", {"key": key + "x"}, call_id="dup-1")
        assert (await client.call(SERVICE, "tally", {"key": key}))["runs"] == 2  # a new callId runs
    # The same callId at once from ten clients: one run, ten identical answers.
    other = f"k-{uuid.uuid4().hex[:8]}"
    clients = [Client(broker.url) for _ in range(10)]
    for each in clients:
        await each.__aenter__()
    try:
        answers = await asyncio.gather(
            *(each.call(SERVICE, "tally", {"key": other}, call_id="dup-2") for each in clients)
        )
    finally:
        for each in clients:
            await each.__aexit__(None, None, None)
    assert answers == [{"key": other, "runs": 1}] * 10
    with psycopg.connect(migrated) as db:
        row = db.execute(
            "SELECT status, fingerprint, response FROM call_results"
            " WHERE app_name = %s AND function = %s AND call_id = %s",
            (SERVICE, "tally", "dup-1"),
        ).fetchone()
    assert row is not None
    status, stored_fingerprint, response = row
    # The Python runtime's fingerprint of the same input: the two runtimes share the store.
    assert (status, bytes(stored_fingerprint)) == ("ok", fingerprint({"key": key}))
    assert json.loads(bytes(response)) == {"key": key, "runs": 1}


def test_fingerprints_match_python(tmp_path: Path) -> None:
    """Canonical JSON of inputs whose numbers and keys orjson writes in its own way."""
    inputs = [
        '{"b": 1, "a": [1.0, 1e16, 0.00001, 1.5e-7, -0.0, 123456789012345678901234], "é": "\\u00e9\\n"}',
        '{"x": {"z": null, "y": true, "\\ud83d\\ude00": 18446744073709551615, "": -9223372036854775809}}',
        '{"k": 1E2, "m": 0.1, "n": 5e-324, "o": 1.7976931348623157e308, "p": 100.0}',
    ]
    script = (
        "const {parseJson, fingerprintOf} = require(process.argv[1]);"
        "for (const text of JSON.parse(process.argv[2]))"
        " console.log(fingerprintOf(parseJson(text).text, null).toString('hex'));"
    )
    out = subprocess.run(
        ["node", "-e", script, str(NODE_RT / "dist" / "json.js"), json.dumps(inputs)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    assert out == [fingerprint(orjson.loads(text)).hex() for text in inputs]  # as the Python runtime reads it


async def _raw_call(broker_url: str, message: Message, inbox: str, wait: float = 10.0) -> list[Message]:
    """Publish ``message`` and collect what arrives on ``inbox``/# for ``wait`` seconds (or the first)."""
    transport = await connect_transport(broker_url, client_id=f"raw-{uuid.uuid4().hex[:8]}")
    got: list[Message] = []
    try:
        await transport.subscribe([inbox + "/#"], qos=1)
        await transport.publish(message)

        async def first() -> None:
            async for received in transport.messages():
                got.append(received)
                return

        try:
            await asyncio.wait_for(first(), wait)
        except TimeoutError:
            pass
    finally:
        await transport.close()
    return got


async def test_raw_mqtt_envelope_and_refusals(broker: MosquittoProcess, runtime: NodeRuntime) -> None:
    inbox = f"reply/raw-{uuid.uuid4().hex[:8]}"
    envelope = {
        "messageId": "m-1",
        "callId": "env-1",
        "replyTo": inbox + "/x",
        "headers": {"X-Probe": "env"},
        "body": {"function": "echo", "parameters": {"text": "via envelope"}},
    }
    [answer] = await _raw_call(
        broker.url, Message(f"service/{SERVICE}", json.dumps(envelope).encode()), inbox
    )
    body = json.loads(answer.payload)
    assert answer.topic == inbox + "/x" and ("status", "ok") in answer.user_properties
    assert (body["callId"], body["inReplyTo"], body["headers"]["status"]) == ("env-1", "m-1", "ok")
    assert body["body"]["text"] == "via envelope" and body["body"]["probe"] == "env"

    # Native form: a malformed deadline and an oversized callId are ValidationErrors, echoed to the caller.
    [bad_deadline] = await _raw_call(
        broker.url,
        Message(
            f"service/{SERVICE}/echo",
            b'{"text": "x"}',
            response_topic=inbox,
            correlation=b"c-deadline",
            user_properties=[("deadline", "1e12")],
        ),
        inbox,
    )
    assert json.loads(bad_deadline.payload)["type"] == "ValidationError"
    assert bad_deadline.correlation == b"c-deadline"
    long_id = b"x" * 257
    [too_long] = await _raw_call(
        broker.url,
        Message(f"service/{SERVICE}/echo", b'{"text": "x"}', response_topic=inbox, correlation=long_id),
        inbox,
    )
    assert json.loads(too_long.payload)["details"] == {"limit": 256, "size": 257}
    assert too_long.correlation == long_id
    # A deadline already past: TimeoutError, and the handler never ran.
    key = f"late-{uuid.uuid4().hex[:8]}"
    [late] = await _raw_call(
        broker.url,
        Message(
            f"service/{SERVICE}/tally",
            json.dumps({"key": key}).encode(),
            response_topic=inbox,
            user_properties=[("deadline", "1000")],
        ),
        inbox,
    )
    assert json.loads(late.payload)["type"] == "TimeoutError"
    # A reply topic outside reply/: acknowledged, nothing published anywhere, the handler not run.
    refused = await _raw_call(
        broker.url,
        Message(f"service/{SERVICE}/tally", json.dumps({"key": key}).encode(), response_topic="service/x/y"),
        inbox,
        wait=1.5,
    )
    assert refused == []
    async with Client(broker.url) as client:
        assert (await client.call(SERVICE, "tally", {"key": key}))["runs"] == 1
    assert "refused reply topic" in runtime.output()


async def test_the_memory_limit_holds(app_dir: Path, broker: MosquittoProcess, tmp_path: Path) -> None:
    """``--memory-mb`` (a pod's ``memory_mb``) takes effect: a call that stays within it is answered; the
    call that goes past it gets ``SystemError`` naming the limit, and the process ends with status 3 (the
    pod starts a fresh one), as the Python runtime does."""
    log = tmp_path / "node-memory.log"
    env = {**os.environ, "DORMANT_BROKER_URL": broker.url, "DORMANT_POD_ID": f"mem-{uuid.uuid4().hex[:6]}"}
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - a child that outlives this call, not awaited here
            ["node", str(MAIN), "--app-dir", str(app_dir), "--no-dedup", "--memory-mb", "64"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    node = NodeRuntime(process, log)
    try:
        await _wait_serving(broker.url, node)
        async with Client(broker.url) as client:
            within = await client.call(SERVICE, "allocate", {"mb": 16}, timeout=30)
            assert within["heldMb"] == 16
            with pytest.raises(errors.SystemError) as raised:
                await client.call(SERVICE, "allocate", {"mb": 256}, timeout=30)
        assert "memory limit of 64 MB" in raised.value.message
        assert isinstance(raised.value.details, dict) and raised.value.details["memoryLimitMb"] == 64
        assert process.wait(30) == 3, node.output()[-3000:]
        assert "went past the memory limit" in node.output()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
