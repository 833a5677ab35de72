"""The generated Python client against a real service: the Python runtime standalone serving the
awkward-schema fixture (``tests/fixtures/services/typed-service``) on the session's Mosquitto, with a
fresh catalog database. Calls go through ``generated/client.py`` and come back as generated models
(JSON names that are not Python names, enums, nested and referenced objects) or typed errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import pytest_asyncio

import dormant
from dormant_catalog.migrate import migrate
from dormant_local import MosquittoProcess

ROOT = Path(__file__).resolve().parents[2]
TYPED = ROOT / "tests" / "fixtures" / "services" / "typed-service"
SOURCE_ROOTS = [
    ROOT / p for p in ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")
]
READY_S = 60.0


@pytest.fixture(scope="module")
def typed_client() -> Iterator[ModuleType]:
    """``typed-service``'s generated package, imported as a caller would: ``typed_generated``."""
    where = Path(os.environ.get("TMPDIR", "/tmp")) / f"dormant-typed-client-{os.getpid()}"
    shutil.rmtree(where, ignore_errors=True)
    shutil.copytree(
        TYPED / "generated",
        where / "typed_generated",
        ignore=shutil.ignore_patterns("dispatch.py", "__pycache__"),
    )
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module("typed_generated.client")
    finally:
        sys.path.remove(str(where))
        for name in [n for n in sys.modules if n.split(".")[0] == "typed_generated"]:
            del sys.modules[name]
        shutil.rmtree(where, ignore_errors=True)


def start_runtime(broker_url: str, env: dict[str, str], log_file: Path) -> subprocess.Popen[bytes]:
    """``python -m dormant_runtime`` standalone on typed-service; it dies with this process (setpriv)."""
    argv = [
        sys.executable, "-m", "dormant_runtime", "--app-dir", str(TYPED), "--version", "1",
        "--broker-url", broker_url,
    ]  # fmt: skip
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        argv = [setpriv, "--pdeathsig=KILL", "--", *argv]
    with log_file.open("ab") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip


@pytest_asyncio.fixture
async def runtime(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """The Python runtime serving typed-service as version 1 (live); yields the broker URL."""
    await migrate(catalog_url)  # the call store (de-duplication) lives in the catalog database
    env = dict(os.environ)
    env.pop("DORMANT_CONTROL_FD", None)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in SOURCE_ROOTS)
    env["DORMANT_CATALOG_URL"] = catalog_url
    proc = start_runtime(broker.url, env, tmp_path / "runtime.log")
    try:
        yield broker.url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.stdin is not None:
            proc.stdin.close()


async def wait_until_served(client: dormant.Client, typed: ModuleType, models: ModuleType) -> None:
    """Poll with real calls until the runtime answers (its start-up time varies on a busy machine)."""
    deadline = time.monotonic() + READY_S
    service = typed.TypedServiceClient(client)
    while True:
        try:
            await service.reject(models.Nothing(), timeout=5.0)
        except dormant.BusinessLogicError:
            return
        except (dormant.NotFound, dormant.Unavailable, dormant.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_calls_through_the_generated_client(runtime: str, typed_client: ModuleType) -> None:
    models = importlib.import_module("typed_generated.models")
    async with dormant.Client(runtime, authorization="") as client:
        await wait_until_served(client, typed_client, models)
        service = typed_client.TypedServiceClient(client)

        order = models.OrderRequest(
            customer_id="c-42",
            lines=[
                models.OrderLine(sku="a", qty=2, unit_price=None, class_=models.Class.fragile),
                models.OrderLine(sku="b", qty=3),
            ],
            priority=models.Priority.urgent,
            shipTo=models.Address(street="Main 1", city="Oslo", geo=models.Geo(lat=59.9, lon=10.7)),
            from_="web",
            point=[1.5, 2.0],
        )
        reply = await service.place_order(order, timeout=30.0)
        assert isinstance(reply, models.OrderReply)
        assert reply.status == "accepted" and reply.totalQty == 5
        assert reply.priority is models.Priority.urgent
        # The order went out by its JSON names and came back the same, nested models and all.
        assert reply.order == order
        assert reply.order.lines[0].class_ is models.Class.fragile and reply.order.lines[0].unit_price is None
        assert reply.order.shipTo is not None and reply.order.shipTo.geo == models.Geo(lat=59.9, lon=10.7)

        # Pinned to the version being served: the same answer (the service's id is a digest of the order).
        pinned = await service.place_order(order, version=1, timeout=30.0)
        assert pinned.orderId == reply.orderId

        with pytest.raises(dormant.BusinessLogicError, match="rejected on purpose") as rejected:
            await service.reject(models.Nothing(), timeout=30.0)
        assert rejected.value.details == {"reason": "test"}

        # Input the schema refuses but the model cannot see (a model built without validation) is
        # refused by the service with ValidationError.
        sneaky = models.OrderRequest.model_construct(customer_id="", lines=[], priority=models.Priority.low)
        with pytest.raises(dormant.ValidationError):
            await service.place_order(sneaky, timeout=30.0)

        # A version nobody serves is refused with a typed error, not a hang.
        with pytest.raises(dormant.DormantError) as unserved:
            await service.place_order(order, version=9, timeout=10.0)
        assert isinstance(unserved.value, dormant.NotFound | dormant.Unavailable | dormant.TimeoutError)


TSC = ROOT / "runtimes" / "node" / "node_modules" / ".bin" / "tsc"
NODE_MODULES = ROOT / "runtimes" / "node" / "node_modules"
CLIENTS_DOC = ROOT / "docs" / "clients.md"

TS_CALLER = """\
import { DormantError, TypedServiceClient } from "./client.js";
import { MqttTransport } from "./mqtt-transport.js";

async function main(): Promise<void> {
  const transport = await MqttTransport.connect(process.argv[2]);
  const client = new TypedServiceClient(transport);
  const out: unknown[] = [];
  try {
    const reply = await client.placeOrder(
      {
        "customer-id": "c-7",
        lines: [{ sku: "a", qty: 2, class: "cold" }, { sku: "b", qty: 1 }],
        priority: "low",
        shipTo: null,
        point: [1, 2],
      },
      { timeout: 30, version: 1 },
    );
    out.push(reply);
    const invalid = { "customer-id": "", lines: [], priority: "low" } as const;
    for (const bad of [() => client.reject({}), () => client.placeOrder({ ...invalid, lines: [] })]) {
      try {
        await bad();
        out.push("no error");
      } catch (error) {
        out.push(error instanceof DormantError ? [error.type, error.message, error.details] : String(error));
      }
    }
  } finally {
    await transport.close();
  }
  console.log(JSON.stringify(out));
}

main();
"""


def docs_transport() -> str:
    """The MQTT.js transport exactly as docs/clients.md gives it."""
    text = CLIENTS_DOC.read_text()
    start = text.index("```ts\n// mqtt-transport.ts") + len("```ts\n")
    return text[start : text.index("```", start)]


@pytest.mark.slow
async def test_the_typescript_client_and_the_documented_transport(
    runtime: str, typed_client: ModuleType, tmp_path: Path
) -> None:
    assert TSC.exists() and (NODE_MODULES / "mqtt").exists() and shutil.which("node") is not None, (
        "needs node and runtimes/node's npm packages (typescript, mqtt): run deploy/bootstrap.sh"
    )
    models = importlib.import_module("typed_generated.models")
    async with dormant.Client(runtime, authorization="") as client:
        await wait_until_served(client, typed_client, models)
    work = tmp_path / "ts"
    shutil.copytree(TYPED / "generated" / "typescript", work)
    (work / "mqtt-transport.ts").write_text(docs_transport())
    (work / "caller.ts").write_text(TS_CALLER)
    (work / "node_modules").symlink_to(NODE_MODULES)
    built = await asyncio.to_thread(
        subprocess.run,
        [str(TSC), "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext",
         "--outDir", "out", "models.ts", "client.ts", "mqtt-transport.ts", "caller.ts"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    ran = await asyncio.to_thread(
        subprocess.run,
        ["node", "out/caller.js", runtime],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    reply, rejected, invalid = json.loads(ran.stdout)
    assert reply["status"] == "accepted" and reply["totalQty"] == 3 and reply["priority"] == "low"
    assert reply["order"]["customer-id"] == "c-7" and reply["order"]["lines"][0]["class"] == "cold"
    assert rejected == ["BusinessLogicError", "rejected on purpose", {"reason": "test"}]
    assert invalid[0] == "ValidationError"
