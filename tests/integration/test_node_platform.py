"""The Node runtime's platform interfaces (runtimes/node/src/platform.ts) with examples/user-service-node,
on a real Mosquitto, Postgres and OIDC provider.

The example is compiled with the runtime's tsc and served by ``node runtimes/node/dist/main.js``; the
``dormant_data`` schema is the Python runtime's (``ensure_schema``), so both runtimes share the same
tables, role and row-level security. Callers carry real tokens: a user created by alice is found by
alice and is ``NotFound`` for bob until an admin's ``grantRead``; a repeated callId stores one user,
sends one ``user_created`` event and answers the stored answer; a ``BusinessLogicError`` after a
query is stored; ``signups_open: false`` in the live configuration closes sign-ups. A small service of
its own (``node-tx``) shows which outcomes keep a handler's writes: a result and a stored error commit
them with the answer, an internal error rolls them back, and a handler past its timeout cannot write.
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
from dormant.callid import child_call_id
from dormant.transport import Message, connect_transport
from dormant_catalog import open_catalog
from dormant_local import MosquittoProcess
from dormant_local.oidc import OidcProvider
from dormant_runtime.datastore import ensure_schema

ROOT = Path(__file__).resolve().parents[2]
NODE_RT = ROOT / "runtimes" / "node"
MAIN = NODE_RT / "dist" / "main.js"
EXAMPLE = ROOT / "examples" / "user-service-node"
SERVICE = "user-service-node"
TX_SERVICE = "node-tx"

TX_SOURCE = """
import { BusinessLogicError, Context, fn, service } from "@dormant/runtime";

@service("node-tx")
export class Tx {
  @fn("write", { timeout: 1 })
  async write(input: { id: string; mode: string }, ctx: Context): Promise<{ id: string }> {
    if (input.mode === "idle") {  // its first write comes after its timeout
      await new Promise((resolve) => setTimeout(resolve, 1500));
      try {
        await ctx.data.insert("items", { id: input.id, mode: input.mode });
        ctx.logger.info("idle write done");
      } catch (exc) {
        ctx.logger.info(`idle write refused: ${(exc as Error).message}`);
      }
    }
    await ctx.data.insert("items", { id: input.id, mode: input.mode });
    if (input.mode === "business") throw new BusinessLogicError("refused after the write");
    if (input.mode === "crash") throw new Error("a bug after the write");
    if (input.mode === "late") {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      try {
        await ctx.data.insert("items", { id: input.id + "-late", mode: input.mode });
        ctx.logger.info("late write done");
      } catch (exc) {
        ctx.logger.info(`late write refused: ${(exc as Error).name}: ${(exc as Error).message}`);
      }
    }
    return { id: input.id };
  }
}
"""

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None
    or not MAIN.exists()
    or not (NODE_RT / "node_modules" / ".bin" / "tsc").exists(),
    reason="the Node runtime is not built (deploy/bootstrap.sh builds it)",
)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/user-service-node compiled into an app dir (its generated/ as committed)."""
    app = tmp_path_factory.mktemp("user-service-node")
    for part in ("src", "generated", "schemas"):
        shutil.copytree(EXAMPLE / part, app / part)
    tsconfig = json.loads((EXAMPLE / "tsconfig.json").read_text())
    options = tsconfig["compilerOptions"]
    options["typeRoots"] = [str(NODE_RT / "node_modules" / "@types")]
    options["paths"] = {"@dormant/runtime": [str(NODE_RT / "dist" / "index.d.ts")]}
    (app / "tsconfig.json").write_text(json.dumps(tsconfig))
    subprocess.run([str(NODE_RT / "node_modules" / ".bin" / "tsc"), "-p", str(app)], check=True, timeout=120)
    assert (app / "dist" / "service.js").exists()
    return app


@pytest.fixture(scope="module")
def tx_app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``node-tx``: one function that writes, then answers as its input says."""
    app = tmp_path_factory.mktemp("node-tx")
    (app / "src").mkdir()
    (app / "generated").mkdir()
    (app / "src" / "service.ts").write_text(TX_SOURCE)
    obj = {"type": "object"}
    interface = {
        "service": TX_SERVICE,
        "baseRuntime": "dormant-node:1",
        "platformInterface": "dormant/1",
        "auth": "required",
        "entry": "dist/service.js",
        "functions": {"write": {"input": obj, "output": obj, "timeout": 1, "roles": [], "method": "write"}},
    }
    (app / "generated" / "interface.json").write_text(json.dumps(interface))
    options = json.loads((EXAMPLE / "tsconfig.json").read_text())["compilerOptions"]
    options["typeRoots"] = [str(NODE_RT / "node_modules" / "@types")]
    options["paths"] = {"@dormant/runtime": [str(NODE_RT / "dist" / "index.d.ts")]}
    (app / "tsconfig.json").write_text(json.dumps({"compilerOptions": options, "include": ["src/**/*.ts"]}))
    subprocess.run([str(NODE_RT / "node_modules" / ".bin" / "tsc"), "-p", str(app)], check=True, timeout=120)
    return app


@pytest_asyncio.fixture(scope="module")
async def provider(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OidcProvider]:
    idp = OidcProvider(Path(tmp_path_factory.mktemp("node-platform-oidc")))
    await idp.start()
    try:
        yield idp
    finally:
        await idp.stop()


@pytest_asyncio.fixture(scope="module")
async def tokens(provider: OidcProvider) -> dict[str, str]:
    return {
        "alice": await provider.token("alice", ("viewer",)),
        "bob": await provider.token("bob", ("viewer",)),
        "admin": await provider.token("root", ("admin",)),
    }


@pytest_asyncio.fixture
async def database(catalog_url: str) -> str:
    catalog = await open_catalog(catalog_url)  # call_results (the runtime does not migrate)
    await catalog.close()
    async with await psycopg.AsyncConnection.connect(catalog_url, autocommit=True) as conn:
        await ensure_schema(conn)  # the DataStore's schema, as a Python runtime prepares it
    return catalog_url


class NodeRuntime:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest_asyncio.fixture
async def runtime(
    app_dir: Path, broker: MosquittoProcess, database: str, provider: OidcProvider, tmp_path: Path
) -> AsyncIterator[NodeRuntime]:
    async for node in _serve(app_dir, SERVICE, broker, database, provider, tmp_path):
        yield node


@pytest_asyncio.fixture
async def tx_runtime(
    tx_app_dir: Path, broker: MosquittoProcess, database: str, provider: OidcProvider, tmp_path: Path
) -> AsyncIterator[NodeRuntime]:
    async for node in _serve(tx_app_dir, TX_SERVICE, broker, database, provider, tmp_path):
        yield node


async def _serve(
    app_dir: Path,
    service: str,
    broker: MosquittoProcess,
    database: str,
    provider: OidcProvider,
    tmp_path: Path,
) -> AsyncIterator[NodeRuntime]:
    log = tmp_path / f"{service}.log"
    env = {
        **os.environ,
        **provider.service_env(),
        "DORMANT_BROKER_URL": broker.url,
        "DORMANT_CATALOG_URL": database,
    }
    env["DORMANT_POD_ID"] = f"test-{uuid.uuid4().hex[:6]}"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: ASYNC220 - a child that outlives this call, not awaited here
            ["node", str(MAIN), "--app-dir", str(app_dir)], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    node = NodeRuntime(process, log)
    try:
        await _wait_serving(broker.url, node, service)
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


async def _wait_serving(broker_url: str, node: NodeRuntime, service: str, timeout: float = 60.0) -> None:
    """Until the runtime answers (an anonymous call is answered Unauthenticated once it serves)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    async with Client(broker_url, authorization="") as client:
        while loop.time() < end:
            assert node.process.poll() is None, node.output()[-3000:]
            try:
                await client.call(service, "getUser", {"userId": "x"}, timeout=1, authorization=None)
            except errors.Unauthenticated:
                return
            except errors.DormantError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError("the Node runtime is not serving:\n" + node.output()[-3000:])


def _bearer(token: str) -> str:
    return f"Bearer {token}"


async def _item_ids(url: str) -> set[str]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT id FROM dormant_data.documents WHERE service = %s AND collection = 'items'", (TX_SERVICE,)
        )
        return {str(row[0]) for row in await cur.fetchall()}


async def _user_rows(url: str, email: str) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM dormant_data.documents WHERE service = %s AND collection = 'users'"
            " AND body ->> 'email' = %s",
            (SERVICE, email),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def test_callers_see_their_own_users_until_an_admin_grants_read(
    broker: MosquittoProcess, runtime: NodeRuntime, tokens: dict[str, str], database: str
) -> None:
    async with Client(broker.url, authorization="") as client:
        created = await client.call(
            SERVICE,
            "createUser",
            {"email": "Ann@Example.com", "name": "Ann"},
            authorization=_bearer(tokens["alice"]),
        )
        user_id = created["userId"]
        found = await client.call(
            SERVICE, "getUser", {"userId": user_id}, authorization=_bearer(tokens["alice"])
        )
        assert found["userId"] == user_id and found["email"] == "ann@example.com" and found["name"] == "Ann"
        assert found["createdAt"].endswith("+00:00")
        with pytest.raises(errors.NotFound):
            await client.call(SERVICE, "getUser", {"userId": user_id}, authorization=_bearer(tokens["bob"]))
        # the same email is unique among alice's users, not among bob's (he cannot see hers)
        with pytest.raises(errors.BusinessLogicError):
            await client.call(
                SERVICE,
                "createUser",
                {"email": "ann@example.com", "name": "Ann"},
                authorization=_bearer(tokens["alice"]),
            )
        await client.call(
            SERVICE,
            "createUser",
            {"email": "ann@example.com", "name": "Ann B"},
            authorization=_bearer(tokens["bob"]),
        )
        with pytest.raises(errors.Forbidden):
            await client.call(SERVICE, "grantRead", {"user": "bob"}, authorization=_bearer(tokens["alice"]))
        granted = await client.call(
            SERVICE, "grantRead", {"user": "bob"}, authorization=_bearer(tokens["admin"])
        )
        assert granted == {"granted": True}
        found = await client.call(
            SERVICE, "getUser", {"userId": user_id}, authorization=_bearer(tokens["bob"])
        )
        assert found["userId"] == user_id
    assert await _user_rows(database, "ann@example.com") == 2
    async with await psycopg.AsyncConnection.connect(database) as conn:
        cur = await conn.execute(
            "SELECT actor, action FROM dormant_data.audit WHERE service = %s ORDER BY id", (SERVICE,)
        )
        actions = await cur.fetchall()
    assert ("alice", "insert") in actions and ("bob", "get") in actions


async def test_a_repeated_call_id_stores_one_user_and_sends_one_event(
    broker: MosquittoProcess, runtime: NodeRuntime, tokens: dict[str, str], database: str
) -> None:
    events = await connect_transport(broker.url, client_id=f"events-{uuid.uuid4().hex[:8]}")
    got: list[Message] = []
    arrived = asyncio.Event()
    try:
        await events.subscribe(["events/notifications"], qos=1)

        async def collect() -> None:
            async for received in events.messages():
                got.append(received)
                arrived.set()

        collecting = asyncio.ensure_future(collect())
        call_id = f"create-{uuid.uuid4().hex}"
        params = {"email": "once@example.com", "name": "Once"}
        async with Client(broker.url, authorization=_bearer(tokens["alice"])) as client:
            first = await client.call(SERVICE, "createUser", params, call_id=call_id)
            again = await client.call(SERVICE, "createUser", params, call_id=call_id)
            assert again == first
            await asyncio.wait_for(arrived.wait(), 30)
            await asyncio.sleep(1.0)  # room for a second event, if one had been sent
        collecting.cancel()
    finally:
        await events.close()
    assert await _user_rows(database, "once@example.com") == 1
    assert len(got) == 1, got
    event = got[0]
    assert orjson.loads(event.payload) == {"type": "user_created", "userId": first["userId"]}
    props = dict(event.user_properties)
    assert props["causation-id"] == call_id and props["user-id"] == "alice"
    assert props["event-id"] == child_call_id(call_id, "event:notifications", 1)  # as Python derives it
    async with await psycopg.AsyncConnection.connect(database) as conn:
        cur = await conn.execute(
            "SELECT status, response FROM call_results WHERE app_name = %s AND call_id = %s",
            (SERVICE, call_id),
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == "ok" and orjson.loads(bytes(row[1])) == first


async def test_signups_open_false_closes_create_user(
    broker: MosquittoProcess, runtime: NodeRuntime, tokens: dict[str, str], database: str
) -> None:
    config = await connect_transport(broker.url, client_id=f"config-{uuid.uuid4().hex[:8]}")
    try:
        body = orjson.dumps({"revision": 1, "values": {"signups_open": False}})
        await config.publish(Message(f"mesh/config/{SERVICE}", body, qos=1, retain=True))
        async with Client(broker.url, authorization=_bearer(tokens["alice"])) as client:
            loop = asyncio.get_running_loop()
            end = loop.time() + 30
            closed = False
            while not closed and loop.time() < end:
                try:
                    await client.call(
                        SERVICE, "createUser", {"email": f"{uuid.uuid4().hex[:8]}@x.org", "name": "N"}
                    )
                    await asyncio.sleep(0.1)
                except errors.BusinessLogicError as exc:
                    assert "sign-ups are closed" in exc.message
                    closed = True
            assert closed, runtime.output()[-3000:]
    finally:
        await config.publish(Message(f"mesh/config/{SERVICE}", b"", qos=1, retain=True))
        await config.close()


async def test_which_outcomes_keep_the_handlers_writes(
    broker: MosquittoProcess, tx_runtime: NodeRuntime, tokens: dict[str, str], database: str
) -> None:
    async with Client(broker.url, authorization=_bearer(tokens["alice"])) as client:
        assert await client.call(TX_SERVICE, "write", {"id": "kept", "mode": "ok"}) == {"id": "kept"}
        with pytest.raises(errors.BusinessLogicError):  # a stored answer: its writes commit with it
            await client.call(TX_SERVICE, "write", {"id": "refused", "mode": "business"})
        with pytest.raises(errors.SystemError):  # not stored: rolled back, a retry runs again
            await client.call(TX_SERVICE, "write", {"id": "crashed", "mode": "crash"})
        with pytest.raises(errors.TimeoutError):  # rolled back at the timeout; the late write is refused
            await client.call(TX_SERVICE, "write", {"id": "late", "mode": "late"}, timeout=10)
        with pytest.raises(errors.TimeoutError):  # no transaction yet at the timeout: none opens later
            await client.call(TX_SERVICE, "write", {"id": "idle", "mode": "idle"}, timeout=10)
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    # The late handlers' writes, seen in the runtime's log (a file: nothing to wait on but polling).
    while not ("late write" in tx_runtime.output() and "idle write" in tx_runtime.output()):
        assert loop.time() < end, tx_runtime.output()[-3000:]
        await asyncio.sleep(0.1)
    assert "late write refused: Error: the call's transaction has ended" in tx_runtime.output()
    assert "idle write refused: the call's transaction has ended" in tx_runtime.output()
    assert await _item_ids(database) == {"kept", "refused"}
