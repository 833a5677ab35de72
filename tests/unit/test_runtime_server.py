"""The runtime's ``Server`` on an in-memory transport and call store: a request is answered, then
acknowledged; what is never acknowledged; callId de-duplication; a handler's transaction committed with
its answer; reconnecting, a session taken over, and draining."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import orjson
import psycopg
import pytest
from pydantic import BaseModel

from dormant import BusinessLogicError, Context, wire
from dormant.app import FunctionSpec, ServiceSpec
from dormant.transport import NOT_AUTHORIZED, SESSION_TAKEN_OVER, Message, TransportError
from dormant_catalog import CatalogUnavailable
from dormant_catalog.calls import CallKey, CallState, CallStore, Claim, fingerprint
from dormant_runtime import server as server_module
from dormant_runtime.dedup import Deduplicator
from dormant_runtime.dispatcher import Dispatcher
from dormant_runtime.limits import EXIT_OUT_OF_MEMORY
from dormant_runtime.server import Server
from dormant_runtime.stats import CallStats

SERVICE_NAME = "greeter"
VERSION = 3
REPLY_TO = "reply/test-client/x"


# ------------------------------------------------------------------------------------------ the service


class In(BaseModel):
    name: str


class Out(BaseModel):
    greeting: str


IN_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}},
    "required": ["name"],
    "additionalProperties": False,
}
OUT_SCHEMA = {"type": "object", "properties": {"greeting": {"type": "string"}}, "required": ["greeting"]}


class Greeter:
    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.gate = asyncio.Event()

    async def hello(self, request: In, ctx: Context) -> Out:
        self.runs.append(("hello", ctx.call_id))
        return Out(greeting=f"hello {request.name}")

    async def refuse(self, request: In, ctx: Context) -> Out:
        self.runs.append(("refuse", ctx.call_id))
        raise BusinessLogicError("not today", {"name": request.name})

    async def crash(self, request: In, ctx: Context) -> Out:
        self.runs.append(("crash", ctx.call_id))
        raise RuntimeError("internal detail")

    async def slow(self, request: In, ctx: Context) -> Out:
        self.runs.append(("slow", ctx.call_id))
        await self.gate.wait()
        return Out(greeting="finally")

    async def configured(self, request: In, ctx: Context) -> Out:
        """The live configuration value named ``request.name``, as this call sees it."""
        return Out(greeting=repr(ctx.config.get(request.name)))

    async def write(self, request: In, ctx: Context) -> Out:
        self.runs.append(("write", ctx.call_id))
        tx = await ctx._transaction()
        tx.writes.append(request.name)
        if request.name == "crash":
            raise RuntimeError("after writing")
        if request.name == "broken":
            tx.broken = True  # the database restarted under the handler
            raise RuntimeError("server closed the connection")
        if request.name == "refuse":
            raise BusinessLogicError("refused after writing")
        return Out(greeting=f"wrote {request.name}")


FUNCTIONS = ("hello", "refuse", "crash", "slow", "write", "configured")
SERVICE = ServiceSpec(
    name=SERVICE_NAME,
    handler_class=Greeter,
    interface_hash="sha256:test",
    functions={name: FunctionSpec(name, name, In, Out, IN_SCHEMA, OUT_SCHEMA, 30.0) for name in FUNCTIONS},
    auth="off",  # delivery is what these tests are about; identity has tests of its own
)


# ------------------------------------------------------------------------------------------ fakes


class FakeTransport:
    """One connection of the fake broker: what the server subscribed, published, and how it closed."""

    def __init__(self, net: FakeNet, kwargs: dict[str, Any]) -> None:
        self.net = net
        self.kwargs = kwargs
        self.inbox: asyncio.Queue[Message | TransportError | None] = asyncio.Queue()
        self.subscribed: list[str] = []
        self.unsubscribed: list[str] = []
        self.closed_end_session: bool | None = None

    async def connect(self) -> None:
        if self.net.refuse_connects > 0:
            self.net.refuse_connects -= 1
            raise TransportError("connection refused")

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        self.subscribed += filters
        for topic in filters:
            # As a broker holding the controller's retained live configuration.
            if topic == wire.config_topic(SERVICE_NAME) and self.net.retained_config is not None:
                self.inbox.put_nowait(Message(topic, orjson.dumps(self.net.retained_config), qos=1))
            if topic == wire.config_topic() and self.net.config_marker:
                self.inbox.put_nowait(Message(topic, b'{"publisher": "dormant-controller"}', qos=1))

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        self.unsubscribed += filters

    async def publish(self, message: Message) -> int:
        if self.net.publish_errors:
            raise self.net.publish_errors.pop(0)
        self.net.log.append(("publish", message.correlation))
        self.net.published.append(message)
        return 0

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            item = await self.inbox.get()
            if item is None:
                return
            if isinstance(item, TransportError):
                raise item
            yield item

    async def close(self, *, end_session: bool = False) -> None:
        self.closed_end_session = end_session
        self.inbox.put_nowait(None)


class FakeNet:
    """Stands in for ``new_transport``: every connection the server opens, and the broker's view."""

    def __init__(self) -> None:
        self.transports: list[FakeTransport] = []
        self.published: list[Message] = []
        self.log: list[tuple[str, bytes | None]] = []
        self.refuse_connects = 0
        self.publish_errors: list[Exception] = []
        self.retained_config: dict[str, Any] | None = {"revision": 1, "values": {}}
        self.config_marker = True

    def new_transport(self, broker_url: str, **kwargs: Any) -> FakeTransport:
        transport = FakeTransport(self, kwargs)
        self.transports.append(transport)
        return transport

    @property
    def current(self) -> FakeTransport:
        return self.transports[-1]

    def request(
        self,
        function: str,
        params: Any,
        *,
        call_id: bytes | None = b"call-1",
        reply_to: str | None = REPLY_TO,
        deadline: float | None = None,
        payload: bytes | None = None,
    ) -> Message:
        """A request as a caller sends it; its ``ack`` is logged."""
        return Message(
            wire.function_topic(SERVICE_NAME, function),
            wire.encode_request(params) if payload is None else payload,
            qos=1,
            response_topic=reply_to,
            correlation=call_id,
            user_properties=wire.request_properties(deadline=deadline),
            ack=lambda: self.log.append(("ack", call_id)),
        )

    def envelope(self, function: str, params: Any, *, call_id: str, ack_as: bytes) -> Message:
        """A request in envelope form (for callers without MQTT 5 properties)."""
        payload = wire.encode_envelope_request(function, params, call_id=call_id, reply_to=REPLY_TO)
        return Message(
            wire.envelope_topic(SERVICE_NAME),
            payload,
            qos=1,
            ack=lambda: self.log.append(("ack", ack_as)),
        )

    def deliver(self, message: Message) -> None:
        self.current.inbox.put_nowait(message)

    def acks(self) -> list[bytes | None]:
        return [cid for kind, cid in self.log if kind == "ack"]

    def answers(self, call_id: bytes | None) -> list[tuple[bool, Any]]:
        """Every answer published for ``call_id``: (ok, decoded body)."""
        found = []
        for message in self.published:
            if message.correlation == call_id:
                ok = ("status", "ok") in message.user_properties
                found.append((ok, orjson.loads(message.payload)))
        return found


@dataclass
class Row:
    status: str  # running, ok, error
    fingerprint: bytes
    owner: str | None
    response: bytes = b""
    lease_expired: bool = False


class MemoryCallStore:
    """``CallStore``'s contract in memory, with switches for outages and lost claims."""

    owner = "me"
    lease_s = 30.0

    def __init__(self) -> None:
        self.rows: dict[CallKey, Row] = {}
        self.claim_error: Exception | None = None
        self.claim_failures = 0
        """How many claims fail with ``claim_error`` before the store answers again (-1: all)."""
        self.complete_in_hook: Callable[[CallKey], bool | None] | None = None
        self.opened = self.closed = False

    async def open(self) -> None:
        self.opened = True

    async def close(self) -> None:
        self.closed = True

    def _state(self, row: Row) -> CallState:
        if row.status == "running":
            return CallState(
                "running",
                fingerprint=row.fingerprint,
                mine=row.owner == self.owner,
                lease_expired=row.lease_expired,
            )
        return CallState("done", ok=row.status == "ok", response=row.response, fingerprint=row.fingerprint)

    async def claim(self, claims: Sequence[Claim]) -> dict[CallKey, CallState]:
        await asyncio.sleep(0)
        if self.claim_error is not None and self.claim_failures != 0:
            self.claim_failures -= 1
            raise self.claim_error
        found: dict[CallKey, CallState] = {}
        for claim in claims:
            row = self.rows.get(claim.key)
            free = row is None or (row.status == "running" and (row.owner == self.owner or row.lease_expired))
            if row is not None and row.fingerprint != claim.fingerprint:
                found[claim.key] = CallState("conflict", fingerprint=row.fingerprint)
            elif free:
                self.rows[claim.key] = Row("running", claim.fingerprint, self.owner)
                found[claim.key] = CallState("run", fingerprint=claim.fingerprint)
            else:
                assert row is not None
                found[claim.key] = self._state(row)
        return found

    async def read(self, keys: Sequence[CallKey]) -> dict[CallKey, CallState]:
        return {k: self._state(self.rows[k]) if k in self.rows else CallState("absent") for k in keys}

    def _store(self, key: CallKey, ok: bool, response: bytes) -> bool:
        row = self.rows.get(key)
        if row is None or row.status != "running" or row.owner != self.owner:
            return False
        row.status, row.response, row.owner = ("ok" if ok else "error"), response, None
        return True

    async def complete(self, results: Sequence[tuple[CallKey, bool, bytes]]) -> set[CallKey]:
        return {key for key, ok, response in results if self._store(key, ok, response)}

    async def complete_in(self, conn: Any, key: CallKey, ok: bool, response: bytes) -> bool:
        if self.complete_in_hook is not None:
            decided = self.complete_in_hook(key)
            if decided is not None:
                return decided
        return self._store(key, ok, response)

    async def release(self, keys: Sequence[CallKey]) -> None:
        for key in keys:
            row = self.rows.get(key)
            if row is not None and row.status == "running" and row.owner == self.owner:
                del self.rows[key]

    async def renew(self, keys: Sequence[CallKey]) -> None:
        pass

    async def purge_expired(self) -> int:
        return 0


@dataclass
class FakeConn:
    writes: list[str] = field(default_factory=list)
    closed: bool = False
    broken: bool = False
    statements: list[str] = field(default_factory=list)

    async def execute(self, query: str | bytes, params: Any = None) -> None:
        """What the runtime itself runs on the handler's connection (leaving the caller's role)."""
        self.statements.append(query.decode() if isinstance(query, bytes) else str(query))


class FakeTransactions:
    """Hands out fake connections and records how each ended."""

    def __init__(self) -> None:
        self.ended: list[tuple[FakeConn, bool]] = []
        self.end_error: Exception | None = None
        self.break_on_commit = False

    async def begin(self) -> FakeConn:
        return FakeConn()

    async def end(self, conn: FakeConn, *, commit: bool) -> None:
        self.ended.append((conn, commit))
        if commit and self.break_on_commit:
            conn.broken = True
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        if commit and self.end_error is not None:
            raise self.end_error


# ------------------------------------------------------------------------------------------ harness


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds (polled; generous for a busy machine)."""
    give_up = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > give_up:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> FakeNet:
    fake = FakeNet()
    monkeypatch.setattr(server_module, "new_transport", fake.new_transport)
    monkeypatch.setattr(server_module, "RECONNECT_MIN_S", 0.001)
    monkeypatch.setattr(server_module, "QUEUE_SETTLE_S", 0.001)
    return fake


@dataclass
class Runtime:
    server: Server
    handler: Greeter
    task: asyncio.Task[None]
    store: MemoryCallStore | None
    transactions: FakeTransactions | None
    dedup: Deduplicator | None


async def start(
    *,
    dedup: bool = False,
    transactions: bool = False,
    max_in_flight: int = 16,
    wait_ready: bool = True,
    concurrency_limit: int | None = None,
) -> Runtime:
    txs = FakeTransactions() if transactions else None
    dispatcher = Dispatcher(SERVICE, VERSION, txs)
    store = MemoryCallStore() if dedup else None
    deduplicator = Deduplicator(cast(CallStore, store)) if store is not None else None
    if deduplicator is not None:
        await deduplicator.start()
    server = Server(
        dispatcher,
        broker_url="mqtt://broker.invalid:1883",
        version=VERSION,
        client_id="dormant-greeter-v3-s0",
        dedup=deduplicator,
        max_in_flight=max_in_flight,
        stats=CallStats(),
        concurrency_limit=concurrency_limit,
    )
    task = asyncio.create_task(server.run())
    if wait_ready:
        await asyncio.wait_for(server.wait_ready(), 10)
    return Runtime(server, cast(Greeter, dispatcher.handler), task, store, txs, deduplicator)


async def stop(runtime: Runtime, timeout: float = 5.0) -> int:
    left = await asyncio.wait_for(runtime.server.drain(timeout), timeout + 10)
    await asyncio.wait_for(runtime.task, 10)
    if runtime.dedup is not None:
        await runtime.dedup.close()
    return left


async def served(net: FakeNet, runtime: Runtime, message: Message) -> None:
    """Deliver ``message`` and wait until the server acknowledged it."""
    before = len(net.acks())
    net.deliver(message)
    await until(lambda: len(net.acks()) > before)


# ------------------------------------------------------------------------------------------ answering


async def test_a_request_is_answered_on_its_reply_topic_then_acknowledged(net: FakeNet) -> None:
    runtime = await start()
    transport = net.current
    assert transport.kwargs == {
        "client_id": "dormant-greeter-v3-s0",
        "clean_start": False,
        "session_expiry_s": server_module.SESSION_EXPIRY_S,
        "manual_ack": True,
    }
    filters = wire.serving_filters(SERVICE_NAME, VERSION, live=True)
    assert transport.subscribed == [wire.config_topic(SERVICE_NAME), wire.config_topic(), *filters]
    deadline = time.time() + 20
    await served(net, runtime, net.request("hello", {"name": "ann"}, deadline=deadline))
    assert net.log == [("publish", b"call-1"), ("ack", b"call-1")]  # the answer first, then the ack
    [answer] = net.published
    assert answer.topic == REPLY_TO and answer.qos == 1 and answer.correlation == b"call-1"
    assert answer.expiry_s is not None and 1 <= answer.expiry_s <= 21
    assert net.answers(b"call-1") == [(True, {"greeting": "hello ann"})]
    assert runtime.handler.runs == [("hello", "call-1")]
    assert runtime.server.stats is not None and runtime.server.stats.calls == 1
    assert await stop(runtime) == 0
    assert transport.unsubscribed == filters
    assert transport.closed_end_session is True  # a drained runtime ends its persistent session


# ------------------------------------------------------------------------------ live configuration


def config_message(revision: int, values: Any) -> Message:
    body = {"revision": revision, "values": values}
    return Message(wire.config_topic(SERVICE_NAME), orjson.dumps(body), qos=1)


async def test_the_retained_configuration_is_in_place_before_the_first_call(net: FakeNet) -> None:
    net.retained_config = {"revision": 4, "values": {"greeting": "hi", "limits": {"max": 3}}}
    runtime = await start()
    assert runtime.server.config_revision == 4
    await served(net, runtime, net.request("configured", {"name": "limits"}, call_id=b"c1"))
    assert net.answers(b"c1") == [(True, {"greeting": "{'max': 3}"})]
    assert await stop(runtime) == 0


async def test_a_new_revision_is_seen_by_the_next_call_and_a_malformed_one_changes_nothing(
    net: FakeNet,
) -> None:
    runtime = await start()
    await served(net, runtime, net.request("configured", {"name": "flag"}, call_id=b"c1"))
    net.deliver(config_message(2, {"flag": True}))
    await served(net, runtime, net.request("configured", {"name": "flag"}, call_id=b"c2"))
    for bad in (b"{not json", b'{"revision": "3", "values": {}}', b'{"revision": 3, "values": []}', b""):
        net.deliver(Message(wire.config_topic(SERVICE_NAME), bad, qos=1))
    await served(net, runtime, net.request("configured", {"name": "flag"}, call_id=b"c3"))
    assert [net.answers(c) for c in (b"c1", b"c2", b"c3")] == [
        [(True, {"greeting": "None"})],
        [(True, {"greeting": "True"})],
        [(True, {"greeting": "True"})],
    ]
    assert runtime.server.config_revision == 2
    assert await stop(runtime) == 0


async def test_with_the_controllers_marker_and_no_revision_the_runtime_serves_at_once(
    net: FakeNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "FIRST_REVISION_WAIT_S", 3600)  # never reached
    net.retained_config = None
    runtime = await start()
    assert runtime.server.config_revision is None
    await served(net, runtime, net.request("configured", {"name": "flag"}, call_id=b"c1"))
    assert net.answers(b"c1") == [(True, {"greeting": "None"})]
    assert await stop(runtime) == 0


async def test_without_a_controller_the_runtime_serves_after_a_bounded_wait(
    net: FakeNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "FIRST_REVISION_WAIT_S", 0.05)
    net.retained_config = None
    net.config_marker = False
    runtime = await start()
    assert runtime.server.config_revision is None
    await served(net, runtime, net.request("configured", {"name": "flag"}, call_id=b"c1"))
    assert net.answers(b"c1") == [(True, {"greeting": "None"})]
    assert await stop(runtime) == 0


async def test_a_version_only_server_subscribes_to_its_version_topic_only(net: FakeNet) -> None:
    server = Server(
        Dispatcher(SERVICE, VERSION), broker_url="mqtt://x:1", version=VERSION, live=False, client_id="c"
    )
    task = asyncio.create_task(server.run())
    await asyncio.wait_for(server.wait_ready(), 10)
    assert net.current.subscribed == [
        wire.config_topic(SERVICE_NAME),
        wire.config_topic(),
        f"$share/{SERVICE_NAME}-v3/service/{SERVICE_NAME}/v3/+",
    ]
    await server.drain(5)
    await task


@pytest.mark.parametrize(
    ("function", "params", "payload", "error"),
    [
        ("refuse", {"name": "bo"}, None, "BusinessLogicError"),
        ("hello", {"name": 5}, None, "ValidationError"),
        ("nothing", {"name": "bo"}, None, "NotFound"),
        ("hello", None, b"{not json", "ValidationError"),
        ("crash", {"name": "bo"}, None, "SystemError"),
    ],
)
async def test_errors_are_answered_typed_and_acknowledged(
    net: FakeNet, function: str, params: Any, payload: bytes | None, error: str
) -> None:
    runtime = await start()
    await served(net, runtime, net.request(function, params, payload=payload))
    [(ok, body)] = net.answers(b"call-1")
    assert not ok and body["type"] == error
    assert "internal detail" not in orjson.dumps(body).decode()  # a crash's own message stays inside
    assert runtime.server.stats is not None and runtime.server.stats.errors == {error: 1}
    await stop(runtime)


async def test_a_request_nobody_may_be_answered_on_is_acknowledged_without_an_answer(net: FakeNet) -> None:
    runtime = await start()
    # A reply topic outside reply/ is refused (the runtime never publishes into a service's topics).
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"c-bad", reply_to="service/x/y"))
    # No reply topic at all: a fire-and-forget call runs, and is acknowledged.
    await served(net, runtime, net.request("hello", {"name": "b"}, call_id=b"c-none", reply_to=None))
    assert net.published == []
    assert net.acks() == [b"c-bad", b"c-none"]
    assert runtime.handler.runs == [("hello", "c-none")]
    await stop(runtime)


async def test_an_answer_the_broker_did_not_take_leaves_the_request_unacknowledged(net: FakeNet) -> None:
    runtime = await start()
    net.publish_errors = [TransportError("connection lost")]
    net.deliver(net.request("hello", {"name": "a"}, call_id=b"c-lost"))
    await until(lambda: runtime.handler.runs == [("hello", "c-lost")])
    await until(lambda: not runtime.server._tasks)
    assert net.acks() == []  # the broker delivers it again; that delivery is then answered
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"c-lost"))
    assert net.answers(b"c-lost") == [(True, {"greeting": "hello a"})]
    await stop(runtime)


async def test_an_answer_that_can_never_be_delivered_settles_the_request(net: FakeNet) -> None:
    runtime = await start()
    net.publish_errors = [TransportError("refused by the ACL", NOT_AUTHORIZED)]
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"c-acl"))
    assert net.published == []  # acknowledged, or it would be redelivered and refused forever
    await stop(runtime)


async def test_a_bug_while_answering_still_acknowledges_the_request(net: FakeNet) -> None:
    runtime = await start()
    net.publish_errors = [RuntimeError("bug in the publishing path")]
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"c-bug"))
    assert net.acks() == [b"c-bug"]
    await stop(runtime)


# ------------------------------------------------------------------------------------------ de-duplication


async def test_a_repeated_call_id_runs_once_and_replays_the_stored_answer(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    await served(net, runtime, net.request("hello", {"name": "ann"}, call_id=b"same"))
    await served(net, runtime, net.request("hello", {"name": "ann"}, call_id=b"same"))
    assert runtime.handler.runs == [("hello", "same")]
    first, second = [m.payload for m in net.published]
    assert first == second
    assert runtime.store is not None and runtime.store.rows[("hello", "same")].status == "ok"
    await stop(runtime)


async def test_concurrent_duplicates_run_once_and_both_get_the_answer(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    net.deliver(net.request("slow", {"name": "a"}, call_id=b"dup"))
    net.deliver(net.request("slow", {"name": "a"}, call_id=b"dup"))
    await until(lambda: len(runtime.handler.runs) == 1)
    runtime.handler.gate.set()
    await until(lambda: len(net.acks()) == 2)
    assert runtime.handler.runs == [("slow", "dup")]
    assert net.answers(b"dup") == [(True, {"greeting": "finally"})] * 2
    await stop(runtime)


async def test_a_call_id_reused_with_another_input_is_a_conflict(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    await served(net, runtime, net.request("hello", {"name": "ann"}, call_id=b"reused"))
    await served(net, runtime, net.request("hello", {"name": "bob"}, call_id=b"reused"))
    [(ok1, _), (ok2, body)] = net.answers(b"reused")
    assert ok1 and not ok2 and body["type"] == "Conflict"
    assert body["details"] == {"callId": "reused", "function": "hello"}
    assert len(runtime.handler.runs) == 1
    await stop(runtime)


async def test_a_system_error_is_not_stored_so_a_retry_runs_again(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    await served(net, runtime, net.request("crash", {"name": "a"}, call_id=b"retry-me"))
    await served(net, runtime, net.request("crash", {"name": "a"}, call_id=b"retry-me"))
    assert runtime.handler.runs == [("crash", "retry-me")] * 2
    assert runtime.store is not None and runtime.store.rows == {}  # the claim was released each time
    await stop(runtime)


async def test_a_business_error_is_stored_and_replayed(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    await served(net, runtime, net.request("refuse", {"name": "a"}, call_id=b"no"))
    await served(net, runtime, net.request("refuse", {"name": "a"}, call_id=b"no"))
    assert runtime.handler.runs == [("refuse", "no")]
    assert [body["type"] for _, body in net.answers(b"no")] == ["BusinessLogicError"] * 2
    await stop(runtime)


async def test_calls_without_a_caller_chosen_id_and_unknown_functions_skip_the_store(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=None))
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=None))
    await served(net, runtime, net.request("nothing", {"name": "a"}, call_id=b"nf"))
    assert len(runtime.handler.runs) == 2  # a made-up callId is never de-duplicated
    assert [body["type"] for _, body in net.answers(b"nf")] == ["NotFound"]
    assert runtime.store is not None and runtime.store.rows == {}
    await stop(runtime)


async def test_envelope_calls_are_de_duplicated_by_their_call_id_and_answered_as_envelopes(
    net: FakeNet,
) -> None:
    runtime = await start(dedup=True)
    for _ in range(2):
        await served(net, runtime, net.envelope("hello", {"name": "env"}, call_id="env-1", ack_as=b"env"))
    assert runtime.handler.runs == [("hello", "env-1")]
    first, second = (orjson.loads(m.payload) for m in net.published)
    assert first["callId"] == second["callId"] == "env-1"
    assert first["body"] == second["body"] == {"greeting": "hello env"}
    assert first["inReplyTo"] != second["inReplyTo"]  # each answer names the request it answers
    await stop(runtime)


async def test_a_call_id_the_store_cannot_keep_is_refused_before_claiming(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    await served(net, runtime, net.envelope("hello", {"name": "a"}, call_id="a\x00b", ack_as=b"nul"))
    [message] = net.published
    body = orjson.loads(message.payload)["body"]
    assert body["type"] == "ValidationError" and "NUL" in body["message"]
    assert runtime.handler.runs == []
    assert runtime.store is not None and runtime.store.rows == {}
    await stop(runtime)


async def test_an_unreachable_store_is_retried_then_answered_unavailable(
    net: FakeNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "STORE_OUTAGE_S", 0.3)
    monkeypatch.setattr(server_module, "STORE_RETRY_MIN_S", 0.01)
    runtime = await start(dedup=True)
    assert runtime.store is not None
    runtime.store.claim_error, runtime.store.claim_failures = CatalogUnavailable("restarting"), -1
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"down"))
    [(ok, body)] = net.answers(b"down")
    assert not ok and body["type"] == "Unavailable"
    assert runtime.handler.runs == []  # nothing ran without a claim
    # A short outage is waited out: the call runs once the store answers again.
    runtime.store.claim_failures = 3
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"blip"))
    assert net.answers(b"blip") == [(True, {"greeting": "hello a"})]
    await stop(runtime)


async def test_a_store_that_refuses_the_call_is_a_system_error(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    assert runtime.store is not None
    runtime.store.claim_error, runtime.store.claim_failures = ValueError("bad parameter"), -1
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"refused"))
    [(ok, body)] = net.answers(b"refused")
    assert not ok and body["type"] == "SystemError"
    await stop(runtime)


async def test_a_duplicate_of_a_call_another_runtime_runs_times_out_at_its_deadline(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    assert runtime.store is not None
    claim = Claim("hello", "elsewhere", fingerprint({"name": "a"}))
    runtime.store.rows[claim.key] = Row("running", claim.fingerprint, owner="other-runtime")
    deadline = time.time() + 0.5
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"elsewhere", deadline=deadline))
    [(ok, body)] = net.answers(b"elsewhere")
    assert not ok and body["type"] == "TimeoutError"
    assert runtime.handler.runs == []
    await stop(runtime)


async def test_a_call_whose_owner_died_is_taken_over(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    assert runtime.store is not None
    claim = Claim("hello", "orphan", fingerprint({"name": "a"}))
    runtime.store.rows[claim.key] = Row("running", claim.fingerprint, owner="dead", lease_expired=True)
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"orphan"))
    assert runtime.handler.runs == [("hello", "orphan")]
    assert runtime.store.rows[claim.key].status == "ok"
    await stop(runtime)


# ------------------------------------------------------------------------------------------ transactions


async def test_a_transaction_commits_with_its_stored_answer(net: FakeNet) -> None:
    runtime = await start(dedup=True, transactions=True)
    await served(net, runtime, net.request("write", {"name": "row1"}, call_id=b"tx-ok"))
    assert net.answers(b"tx-ok") == [(True, {"greeting": "wrote row1"})]
    assert runtime.transactions is not None and runtime.store is not None
    [(conn, commit)] = runtime.transactions.ended
    assert conn.writes == ["row1"] and commit is True
    # The fence is written as the runtime, never as the caller the DataStore acted as.
    assert any("set_config('role', 'none', true)" in statement for statement in conn.statements)
    assert runtime.store.rows[("write", "tx-ok")].status == "ok"
    # The repeat is answered from the store: no second transaction.
    await served(net, runtime, net.request("write", {"name": "row1"}, call_id=b"tx-ok"))
    assert len(runtime.transactions.ended) == 1 and len(runtime.handler.runs) == 1
    await stop(runtime)


async def test_a_handler_that_fails_after_writing_is_rolled_back_and_released(net: FakeNet) -> None:
    runtime = await start(dedup=True, transactions=True)
    await served(net, runtime, net.request("write", {"name": "crash"}, call_id=b"tx-crash"))
    [(ok, body)] = net.answers(b"tx-crash")
    assert not ok and body["type"] == "SystemError"
    assert runtime.transactions is not None and runtime.store is not None
    assert [commit for _, commit in runtime.transactions.ended] == [False]
    assert runtime.store.rows == {}
    await stop(runtime)


async def test_a_stored_error_commits_with_the_transaction(net: FakeNet) -> None:
    runtime = await start(dedup=True, transactions=True)
    await served(net, runtime, net.request("write", {"name": "refuse"}, call_id=b"tx-refuse"))
    [(ok, body)] = net.answers(b"tx-refuse")
    assert not ok and body["type"] == "BusinessLogicError"
    assert runtime.transactions is not None and runtime.store is not None
    assert [commit for _, commit in runtime.transactions.ended] == [True]
    assert runtime.store.rows[("write", "tx-refuse")].status == "error"
    await stop(runtime)


async def test_a_claim_lost_before_the_commit_answers_what_the_new_owner_stored(net: FakeNet) -> None:
    runtime = await start(dedup=True, transactions=True)
    store = runtime.store
    assert store is not None

    def taken_over(key: CallKey) -> bool:
        # This runtime froze past its lease: another one took the call over and finished it.
        row = store.rows[key]
        row.status, row.owner, row.response = "ok", None, b'{"greeting":"from the other runtime"}'
        return False

    store.complete_in_hook = taken_over
    await served(net, runtime, net.request("write", {"name": "x"}, call_id=b"tx-lost"))
    assert net.answers(b"tx-lost") == [(True, {"greeting": "from the other runtime"})]
    assert runtime.transactions is not None
    assert [commit for _, commit in runtime.transactions.ended] == [False]  # our writes rolled back
    await stop(runtime)


@pytest.mark.parametrize("where", ["commit", "handler"])
async def test_a_connection_lost_again_and_again_is_answered_unavailable(net: FakeNet, where: str) -> None:
    """The database connection breaks at the commit (or under the handler) on every run: the call is
    run again on a fresh connection, a bounded number of times, then answered Unavailable."""
    runtime = await start(dedup=True, transactions=True)
    store, transactions = runtime.store, runtime.transactions
    assert store is not None and transactions is not None
    if where == "commit":
        transactions.break_on_commit = True
        store.complete_in_hook = lambda key: True  # written in the transaction that then fails
    name = "x" if where == "commit" else "broken"
    await served(net, runtime, net.request("write", {"name": name}, call_id=b"tx-cut"))
    [(ok, body)] = net.answers(b"tx-cut")
    assert not ok and body["type"] == "Unavailable"
    assert len(runtime.handler.runs) == server_module.MAX_RUNS_PER_DELIVERY
    assert all(commit is False for _, commit in transactions.ended[-1:])
    assert store.rows == {}  # the claim was given back: a retry runs the call again
    await stop(runtime)


async def test_a_commit_that_fails_for_good_is_a_system_error(net: FakeNet) -> None:
    runtime = await start(dedup=True, transactions=True)
    assert runtime.transactions is not None and runtime.store is not None
    runtime.transactions.end_error = ValueError("constraint violated at commit")
    await served(net, runtime, net.request("write", {"name": "x"}, call_id=b"tx-fail"))
    [(ok, body)] = net.answers(b"tx-fail")
    assert not ok and body["type"] == "SystemError" and "could not commit" in body["message"]
    assert len(runtime.handler.runs) == 1
    await stop(runtime)


# ------------------------------------------------------------------------------------------ limits


async def test_calls_over_the_concurrency_limit_are_throttled_before_they_run(net: FakeNet) -> None:
    runtime = await start(concurrency_limit=2, dedup=True)
    for n in range(2):
        net.deliver(net.request("slow", {"name": "a"}, call_id=f"held-{n}".encode()))
    await until(lambda: len(runtime.handler.runs) == 2)
    await served(net, runtime, net.request("hello", {"name": "b"}, call_id=b"over"))
    [(ok, body)] = net.answers(b"over")
    assert not ok and body["type"] == "Throttled" and body["details"] == {"limit": 2}
    assert len(runtime.handler.runs) == 2  # refused before running, and nothing stored for it
    assert runtime.store is not None and all(call_id != "over" for _, call_id in runtime.store.rows)
    runtime.handler.gate.set()
    await until(lambda: len(net.answers(b"held-0")) == 1 and len(net.answers(b"held-1")) == 1)
    await served(net, runtime, net.request("hello", {"name": "c"}, call_id=b"over"))  # room again
    assert net.answers(b"over")[-1] == (True, {"greeting": "hello c"})
    assert runtime.server.stats is not None and runtime.server.stats.errors == {"Throttled": 1}
    await stop(runtime)


async def test_a_call_past_the_memory_limit_fails_typed_and_ends_the_process(
    net: FakeNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    exits: list[int] = []
    monkeypatch.setattr(server_module.os, "_exit", exits.append)
    runtime = await start()
    runtime.server.dispatcher.memory_limit_mb = 128

    async def hungry(request: In, ctx: Context) -> Out:
        raise MemoryError()

    monkeypatch.setattr(runtime.handler, "hello", hungry)
    await served(net, runtime, net.request("hello", {"name": "a"}, call_id=b"big"))
    [(ok, body)] = net.answers(b"big")
    assert not ok and body["type"] == "SystemError" and "memory limit of 128 MB" in body["message"]
    assert body["details"]["memoryLimitMb"] == 128 and body["details"]["peakRssMb"] > 0
    assert exits == [EXIT_OUT_OF_MEMORY]  # answered first, then the process ends
    await stop(runtime)


# ------------------------------------------------------------------------------------------ connection


async def test_an_unreachable_broker_is_retried_until_it_answers(net: FakeNet) -> None:
    net.refuse_connects = 3
    runtime = await start()
    assert len(net.transports) == 4
    assert all(t.closed_end_session is False for t in net.transports[:3])
    await served(net, runtime, net.request("hello", {"name": "a"}))
    await stop(runtime)


async def test_a_lost_connection_is_replaced_and_resubscribed(net: FakeNet) -> None:
    runtime = await start()
    first = net.current
    first.inbox.put_nowait(TransportError("connection lost"))
    await until(lambda: len(net.transports) == 2 and bool(net.current.subscribed))
    assert first.closed_end_session is False  # the session is kept: unacknowledged requests come back
    assert net.current.subscribed == first.subscribed
    await served(net, runtime, net.request("hello", {"name": "after"}, call_id=b"after"))
    assert net.answers(b"after") == [(True, {"greeting": "hello after"})]
    await stop(runtime)


async def test_a_runtime_whose_session_was_taken_over_waits_to_be_drained(net: FakeNet) -> None:
    runtime = await start()
    transport = net.current
    transport.inbox.put_nowait(TransportError("session taken over", SESSION_TAKEN_OVER))
    await until(lambda: runtime.server.replaced)
    await asyncio.sleep(0.05)
    assert len(net.transports) == 1  # no reconnect: that would take the session back
    await stop(runtime)
    assert transport.unsubscribed == []  # the subscription belongs to the new runtime now
    assert transport.closed_end_session is False  # and so does the session


async def test_a_runtime_closed_silently_each_time_it_reconnects_stops_fighting_for_its_session(
    net: FakeNet,
) -> None:
    # Mosquitto before 2.0.15 closes a taken-over connection without a reason code: three silent
    # losses in a row, each soon after connecting, are the other connection taking the session back.
    runtime = await start()
    for count in range(1, 4):
        await until(lambda count=count: len(net.transports) == count and bool(net.current.subscribed))
        net.current.inbox.put_nowait(TransportError("connection lost"))
    await until(lambda: runtime.server.replaced)
    await asyncio.sleep(0.05)
    assert len(net.transports) == 3  # two reconnects, then no more: a third would take the session back
    await stop(runtime)
    assert net.current.closed_end_session is False  # the session belongs to the other runtime


async def test_draining_while_the_broker_is_unreachable_ends_the_server(net: FakeNet) -> None:
    net.refuse_connects = 10**6
    runtime = await start(wait_ready=False)
    await until(lambda: len(net.transports) >= 2)
    assert await stop(runtime) == 0


# ------------------------------------------------------------------------------------------ draining


async def test_drain_finishes_the_calls_in_flight(net: FakeNet) -> None:
    runtime = await start()
    transport = net.current
    net.deliver(net.request("slow", {"name": "a"}, call_id=b"in-flight"))
    await until(lambda: len(runtime.handler.runs) == 1)
    draining = asyncio.create_task(runtime.server.drain(10))
    await until(lambda: bool(transport.unsubscribed))  # no new calls: the group's others get them
    assert not draining.done()
    runtime.handler.gate.set()
    assert await asyncio.wait_for(draining, 10) == 0
    assert net.answers(b"in-flight") == [(True, {"greeting": "finally"})]
    assert net.acks() == [b"in-flight"]
    await asyncio.wait_for(runtime.task, 10)
    assert await runtime.server.drain(1) == 0  # a second drain returns at once


async def test_drain_cuts_off_calls_past_its_timeout_and_gives_their_claims_back(net: FakeNet) -> None:
    runtime = await start(dedup=True)
    net.deliver(net.request("slow", {"name": "a"}, call_id=b"stuck"))
    await until(lambda: len(runtime.handler.runs) == 1)
    assert runtime.store is not None and ("slow", "stuck") in runtime.store.rows
    assert await stop(runtime, timeout=0.2) == 1
    assert net.acks() == []  # redelivered to another runtime
    assert runtime.store.rows == {}  # and the claim is free for it
    assert runtime.store.closed


async def test_calls_in_flight_are_bounded(net: FakeNet) -> None:
    runtime = await start(max_in_flight=1)
    net.deliver(net.request("slow", {"name": "a"}, call_id=b"first"))
    net.deliver(net.request("hello", {"name": "b"}, call_id=b"second"))
    await until(lambda: len(runtime.handler.runs) == 1)
    await asyncio.sleep(0.1)
    assert runtime.handler.runs == [("slow", "first")]  # the second waits for a free slot
    runtime.handler.gate.set()
    await until(lambda: len(net.acks()) == 2)
    assert [cid for _, cid in runtime.handler.runs] == ["first", "second"]
    await stop(runtime)


async def test_a_callers_retry_of_a_running_call_is_not_throttled(net: FakeNet) -> None:
    runtime = await start(concurrency_limit=1, dedup=True)
    net.deliver(net.request("slow", {"name": "a"}, call_id=b"only"))
    await until(lambda: len(runtime.handler.runs) == 1)
    net.deliver(net.request("slow", {"name": "a"}, call_id=b"only"))  # the caller sent it again
    net.deliver(net.request("hello", {"name": "b"}, call_id=b"other"))
    await until(lambda: len(net.answers(b"other")) == 1)
    assert net.answers(b"other")[0][1]["type"] == "Throttled"
    assert net.answers(b"only") == []  # the retry waits for the run's answer
    runtime.handler.gate.set()
    await until(lambda: len(net.answers(b"only")) == 2)
    assert {ok for ok, _ in net.answers(b"only")} == {True} and len(runtime.handler.runs) == 1
    await stop(runtime)
