"""``dormant.Client`` on an in-memory broker: request shape, answers and typed errors, retries with the
same callId, timeouts, fail-fast on "not authorized" and "no subscribers" (explained from the service's
retained state), route tables, reconnecting, and closing."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
import pytest
from pydantic import BaseModel

from dormant import client as client_module
from dormant import wire
from dormant.callid import CallId
from dormant.client import Client
from dormant.errors import (
    BusinessLogicError,
    DormantError,
    Forbidden,
    NotFound,
    TimeoutError,
    Unauthenticated,
    Unavailable,
    ValidationError,
)
from dormant.transport import (
    NO_MATCHING_SUBSCRIBERS,
    NOT_AUTHORIZED,
    SESSION_TAKEN_OVER,
    TAKEOVER_LOSSES,
    Message,
    TransportError,
)

SERVICE = "users"


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching (``+`` one level, ``#`` the rest)."""
    filter_parts, topic_parts = topic_filter.split("/"), topic.split("/")
    for i, part in enumerate(filter_parts):
        if part == "#":
            return True
        if i >= len(topic_parts) or (part != "+" and part != topic_parts[i]):
            return False
    return len(filter_parts) == len(topic_parts)


Responder = Callable[["FakeConnection", Message], int]


class FakeConnection:
    def __init__(self, broker: FakeBroker, kwargs: dict[str, Any]) -> None:
        self.broker = broker
        self.kwargs = kwargs
        self.queue: asyncio.Queue[Message | TransportError | None] = asyncio.Queue()
        self.filters: list[str] = []
        self.closed_end_session: bool | None = None

    async def connect(self) -> None:
        if self.broker.refuse_connects > 0:
            self.broker.refuse_connects -= 1
            raise TransportError("connection refused", self.broker.refuse_reason)

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        if self.broker.refuse_subscribe is not None:
            raise TransportError("subscribe failed: not authorized", self.broker.refuse_subscribe)
        self.filters += filters
        for topic, payload in self.broker.retained.items():  # sent right after the SUBACK
            if any(matches(f, topic) for f in filters):
                self.queue.put_nowait(Message(topic, payload, retain=True))

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        pass

    async def publish(self, message: Message) -> int:
        if message.topic.startswith("reply/"):  # to our own inbox: the broker sends it back to us
            if any(matches(f, message.topic) for f in self.filters):
                self.queue.put_nowait(message)
            return 0
        if self.broker.publish_errors:  # requests only
            raise self.broker.publish_errors.pop(0)
        if self.broker.silent:  # no PUBACK, ever (the broker cut off by a partition)
            await asyncio.Event().wait()
        self.broker.requests.append(message)
        return self.broker.responder(self, message)

    async def messages(self) -> AsyncIterator[Message]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, TransportError):
                raise item
            yield item

    async def close(self, *, end_session: bool = False) -> None:
        self.closed_end_session = end_session
        self.queue.put_nowait(None)

    def answer(self, request: Message, body: Any, *, ok: bool = True) -> None:
        assert request.response_topic is not None
        status = wire.STATUS_OK if ok else wire.STATUS_ERROR
        self.queue.put_nowait(
            Message(
                request.response_topic,
                orjson.dumps(body),
                correlation=request.correlation,
                user_properties=[(wire.PROP_STATUS, status)],
            )
        )


def echo(conn: FakeConnection, request: Message) -> int:
    """A service that answers every call with its input and topic."""
    conn.answer(request, {"topic": request.topic, "params": orjson.loads(request.payload)})
    return 0


class FakeBroker:
    def __init__(self) -> None:
        self.connections: list[FakeConnection] = []
        self.requests: list[Message] = []
        self.retained: dict[str, bytes] = {}
        self.refuse_connects = 0
        self.refuse_reason: int | None = None
        """The CONNACK reason code the refused connects carry."""
        self.refuse_subscribe: int | None = None
        """When set, every SUBSCRIBE is refused with this reason code."""
        self.publish_errors: list[TransportError] = []
        self.silent = False
        """When set, requests are never acknowledged."""
        self.responder: Responder = echo

    def new_transport(self, broker_url: str, **kwargs: Any) -> FakeConnection:
        connection = FakeConnection(self, kwargs)
        self.connections.append(connection)
        return connection

    @property
    def current(self) -> FakeConnection:
        return self.connections[-1]


@pytest.fixture
def broker(monkeypatch: pytest.MonkeyPatch) -> FakeBroker:
    """Overrides the suite's real-broker fixture of the same name for this module: nothing here needs it."""
    fake = FakeBroker()
    monkeypatch.setattr(client_module, "new_transport", fake.new_transport)
    monkeypatch.setattr(client_module, "RECONNECT_MIN_S", 0.001)
    return fake


def client(**kwargs: Any) -> Client:
    kwargs.setdefault("client_id", "test-client")
    return Client("mqtt://broker.invalid:1883", **kwargs)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, "condition not reached in time"
        await asyncio.sleep(0.005)


def service_state(**versions: Any) -> bytes:
    return orjson.dumps(
        {
            "latest": 1,
            "live": 1,
            "state": versions.pop("state", "serving"),
            "reason": versions.pop("reason", "2 replicas serving"),
            "functions": [["getUser"]],
            "versions": {"1": {"state": "serving", "reason": "ok", "functions": 0}},
        }
    )


# ------------------------------------------------------------------------------------------ calls


async def test_a_call_is_published_with_its_properties_and_returns_the_answer(broker: FakeBroker) -> None:
    async with client(authorization="Bearer t0k", timeout=20) as c:
        started = time.time()
        result = await c.call(SERVICE, "getUser", {"id": 7}, headers={"traceparent": "00-x"})
    assert result == {"topic": "service/users/getUser", "params": {"id": 7}}
    [request] = broker.requests
    assert request.qos == 1 and request.response_topic == "reply/test-client"
    assert request.correlation is not None and len(request.correlation) == 16  # a fresh random callId
    props = dict(request.user_properties)
    assert props["authorization"] == "Bearer t0k" and props["traceparent"] == "00-x"
    assert started + 19 <= int(props["deadline"]) / 1000 <= time.time() + 20
    assert request.expiry_s is not None and 19 <= request.expiry_s <= 20
    assert broker.current.kwargs["clean_start"] is False  # a persistent inbox across reconnects
    assert "reply/test-client/#" in broker.current.filters
    assert broker.current.closed_end_session is True


async def test_params_may_be_a_model_a_mapping_or_nothing(broker: FakeBroker) -> None:
    class Query(BaseModel):
        id: int
        note: str | None = None

    async with client() as c:
        assert (await c.call(SERVICE, "f", Query(id=1)))["params"] == {"id": 1}
        assert (await c.call(SERVICE, "f", Query(id=1, note=None)))["params"] == {"id": 1, "note": None}
        assert (await c.call(SERVICE, "f"))["params"] == {}


async def test_a_call_id_is_sent_as_given(broker: FakeBroker) -> None:
    async with client() as c:
        await c.call(SERVICE, "f", {}, call_id="order-17")
        await c.call(SERVICE, "f", {}, call_id=b"\x00\x01")
    assert [r.correlation for r in broker.requests] == [b"order-17", b"\x00\x01"]


async def test_an_error_answer_raises_the_typed_error(broker: FakeBroker) -> None:
    def refuse(conn: FakeConnection, request: Message) -> int:
        error = {"type": "BusinessLogicError", "message": "no such user", "details": {"id": 7}}
        conn.answer(request, error, ok=False)
        return 0

    broker.responder = refuse
    async with client() as c:
        with pytest.raises(BusinessLogicError) as caught:
            await c.call(SERVICE, "getUser", {"id": 7})
    assert caught.value.message == "no such user" and caught.value.details == {"id": 7}


async def test_a_late_answer_is_awaited_while_the_same_call_id_is_published_again(broker: FakeBroker) -> None:
    def answer_the_second(conn: FakeConnection, request: Message) -> int:
        if len(broker.requests) >= 2:
            echo(conn, request)
        return 0

    broker.responder = answer_the_second
    async with client(first_retry=0.05) as c:
        assert (await c.call(SERVICE, "f", {"n": 1}))["params"] == {"n": 1}
        assert c.retries == 1
    first, second = broker.requests
    assert first.correlation == second.correlation and first.payload == second.payload


async def test_no_answer_is_a_timeout_naming_the_call_and_its_attempts(broker: FakeBroker) -> None:
    broker.responder = lambda conn, request: 0
    async with client(first_retry=0.05, max_retry_interval=0.1) as c:
        with pytest.raises(TimeoutError) as caught:
            await c.call(SERVICE, "f", {}, timeout=1.0, call_id="slow-1")
    details = caught.value.details
    assert details["callId"] == "slow-1" and details["timeout"] == 1.0
    assert details["attempts"] == len(broker.requests) >= 2
    assert {r.correlation for r in broker.requests} == {b"slow-1"}


async def test_a_call_whose_publish_is_never_acknowledged_ends_at_its_deadline(broker: FakeBroker) -> None:
    """A connection to a broker that went silent (a network partition) gets no PUBACK until the
    keep-alive gives it up, 15 s or more later: the call still ends at its own deadline."""
    broker.silent = True
    async with client() as c:
        with pytest.raises(TimeoutError) as caught:
            await asyncio.wait_for(c.call(SERVICE, "f", {}, timeout=0.3, call_id="silent-1"), 30)
    assert caught.value.details["callId"] == "silent-1"


async def test_an_answer_to_nobody_waiting_is_dropped(broker: FakeBroker) -> None:
    async with client() as c:
        stray = Message("reply/test-client", b'"late"', correlation=CallId.new().data)
        broker.current.queue.put_nowait(stray)  # the answer to a call that already timed out
        broker.current.queue.put_nowait(Message("reply/test-client/other", b"noise"))
        assert (await c.call(SERVICE, "f", {"n": 2}))["params"] == {"n": 2}


async def test_calling_before_connecting_is_a_usage_error(broker: FakeBroker) -> None:
    with pytest.raises(RuntimeError, match="async with"):
        await client().call(SERVICE, "f", {})


# ------------------------------------------------------------------------------------------ fail fast


async def test_a_call_the_broker_does_not_authorize_fails_at_once(broker: FakeBroker) -> None:
    broker.responder = lambda conn, request: NOT_AUTHORIZED
    async with client() as c:
        with pytest.raises(Forbidden, match=r"users\.f"):
            await c.call(SERVICE, "f", {}, timeout=30)
    assert len(broker.requests) == 1


async def test_a_publish_refused_as_not_authorized_fails_at_once(broker: FakeBroker) -> None:
    broker.publish_errors = [TransportError("refused", NOT_AUTHORIZED)]
    async with client() as c:
        with pytest.raises(Forbidden):
            await c.call(SERVICE, "f", {}, timeout=30)
    assert broker.requests == []


@pytest.mark.parametrize(
    ("service", "function"), [("bad+name", "f"), ("users", "a/b"), ("users", "v2"), ("", "f")]
)
async def test_a_name_no_service_or_function_can_have_is_refused_before_anything_is_sent(
    broker: FakeBroker, service: str, function: str
) -> None:
    async with client() as c:
        with pytest.raises(ValidationError):
            await c.call(service, function, {}, timeout=30)
    assert broker.requests == []


@pytest.mark.parametrize(
    ("reason", "error"),
    [(0x90, ValidationError), (0x81, ValidationError), (0x95, ValidationError), (0x97, Unavailable)],
)
async def test_a_refused_publish_fails_at_once_with_a_typed_error(
    broker: FakeBroker, reason: int, error: type[DormantError]
) -> None:
    # Sending the same request again cannot help: no waiting out the timeout.
    broker.publish_errors = [TransportError("refused", reason)]
    async with client() as c:
        with pytest.raises(error) as raised:  # a TimeoutError would mean it retried until the deadline
            await c.call(SERVICE, "f", {}, timeout=30)
    assert raised.value.details == {"reasonCode": reason} and broker.requests == []


@pytest.mark.parametrize(
    ("retained", "function", "version", "error", "words"),
    [
        ({"mesh/services": b"1"}, "getUser", None, NotFound, "no service named 'users'"),
        ({"mesh/services": b"1", "mesh/services/users": service_state()}, "nope", None, NotFound, "nope"),
        (
            {"mesh/services": b"1", "mesh/services/users": service_state()},
            "getUser",
            9,
            NotFound,
            "version 9",
        ),
        (
            {"mesh/services": b"1", "mesh/services/users": service_state(state="starting", reason="pulling")},
            "getUser",
            None,
            Unavailable,
            "pulling",
        ),
        ({}, "getUser", None, Unavailable, "is the controller running?"),
    ],
)
async def test_a_call_that_reaches_nobody_says_why(
    broker: FakeBroker,
    retained: dict[str, bytes],
    function: str,
    version: int | None,
    error: type[Exception],
    words: str,
) -> None:
    broker.retained = retained
    broker.responder = lambda conn, request: NO_MATCHING_SUBSCRIBERS
    async with client() as c:
        with pytest.raises(error, match=words) as caught:
            await c.call(SERVICE, function, {}, version=version, call_id="why-1", timeout=30)
    details = caught.value.details  # type: ignore[attr-defined]
    assert details["noSubscribers"] is True and details["callId"] == "why-1"
    assert len(broker.requests) == 1


async def test_no_subscribers_right_after_a_reconnect_is_retried(broker: FakeBroker) -> None:
    async with client() as c:
        broker.current.queue.put_nowait(TransportError("connection lost"))
        await until(lambda: len(broker.connections) == 2 and c._connected.is_set())

        def nobody_then_answer(conn: FakeConnection, request: Message) -> int:
            if len(broker.requests) == 1:
                return NO_MATCHING_SUBSCRIBERS  # the runtimes are reconnecting too
            return echo(conn, request)

        broker.responder = nobody_then_answer
        assert (await c.call(SERVICE, "f", {"n": 3}, timeout=10))["params"] == {"n": 3}
    assert len(broker.requests) == 2


async def test_no_subscribers_after_an_earlier_attempt_was_delivered_keeps_waiting(
    broker: FakeBroker,
) -> None:
    """The runtime that got the first attempt is draining: its answer may still come."""

    def delivered_then_nobody(conn: FakeConnection, request: Message) -> int:
        if len(broker.requests) == 1:
            return 0
        echo(conn, request)  # the draining runtime answers at last
        return NO_MATCHING_SUBSCRIBERS

    broker.responder = delivered_then_nobody
    async with client(first_retry=0.05) as c:
        assert (await c.call(SERVICE, "f", {"n": 4}, timeout=10))["params"] == {"n": 4}


# ------------------------------------------------------------------------------------------ routes


async def test_calls_without_a_version_follow_the_published_route_weights(broker: FakeBroker) -> None:
    broker.retained = {"mesh/routes/users": orjson.dumps({"live": {"1": 50, "2": 50}, "beta": {"3": 1}})}
    async with client() as c:
        topics = {(await c.call(SERVICE, "f", {}, routing_key="user-42"))["topic"] for _ in range(5)}
        assert len(topics) == 1  # a routing key sticks to one version
        assert await c.route(SERVICE, alias="beta") == 3
        assert await c.route(SERVICE, alias="nosuch") is None
        assert (await c.call(SERVICE, "f", {}, version=7))["topic"] == "service/users/v7/f"
    assert topics <= {"service/users/v1/f", "service/users/v2/f"}
    assert broker.current.filters.count("mesh/routes/users") == 1  # subscribed once


async def test_without_a_route_table_a_call_goes_to_the_live_topic(broker: FakeBroker) -> None:
    async with client() as c:
        assert (await c.call(SERVICE, "f", {}))["topic"] == "service/users/f"


# ------------------------------------------------------------------------------------------ connection


async def test_an_unreachable_broker_is_unavailable_without_its_password(broker: FakeBroker) -> None:
    broker.refuse_connects = 1
    c = Client("mqtt://ann:s3cret@broker.invalid:1883")
    with pytest.raises(Unavailable) as caught:
        await c.connect()
    assert caught.value.details == {"broker": "mqtt://ann:***@broker.invalid:1883"}
    assert "s3cret" not in str(caught.value)
    assert broker.current.closed_end_session is False


async def test_the_broker_url_comes_from_the_environment(
    broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DORMANT_BROKER_URL", "mqtt://from-env:1999")
    assert Client().broker_url == "mqtt://from-env:1999"


async def test_a_lost_connection_is_restored_and_calls_made_meanwhile_go_through(broker: FakeBroker) -> None:
    broker.retained = {"mesh/routes/users": orjson.dumps({"live": {"4": 1}})}
    async with client() as c:
        await c.call(SERVICE, "f", {})  # watches the service's routes from now on
        broker.refuse_connects = 2
        broker.current.queue.put_nowait(TransportError("connection lost"))
        await until(lambda: len(broker.connections) >= 2)
        result = await c.call(SERVICE, "f", {"after": True}, timeout=10)
    assert result == {"topic": "service/users/v4/f", "params": {"after": True}}
    assert len(broker.connections) == 4  # the first, two refused, the restored one
    restored = broker.connections[-1]
    assert "reply/test-client/#" in restored.filters and "mesh/routes/users" in restored.filters


async def test_a_publish_cut_off_by_a_dropped_connection_is_sent_again(broker: FakeBroker) -> None:
    broker.publish_errors = [TransportError("connection lost")]
    async with client() as c:
        assert (await c.call(SERVICE, "f", {"n": 5}, call_id="again"))["params"] == {"n": 5}
    assert broker.publish_errors == []  # the first publish failed ...
    assert [r.correlation for r in broker.requests] == [b"again"]  # ... and the second got through


async def test_closing_fails_the_calls_in_flight(broker: FakeBroker) -> None:
    broker.responder = lambda conn, request: 0
    c = client()
    await c.connect()
    call = asyncio.create_task(c.call(SERVICE, "f", {}, timeout=60))
    await until(lambda: bool(broker.requests))
    await c.close()
    with pytest.raises(Unavailable, match="closed"):
        await asyncio.wait_for(call, 10)
    assert broker.current.closed_end_session is True


# ------------------------------------------------------------------------------- broker identities


async def test_a_client_with_a_broker_user_answers_into_that_users_inbox(broker: FakeBroker) -> None:
    async with Client("mqtt://al%40ice:p%3As@broker.invalid:1883", client_id="c-1") as c:
        assert c.username == "al@ice"
        assert await c.call(SERVICE, "f", {"n": 1}) == {"topic": "service/users/f", "params": {"n": 1}}
    [request] = broker.requests
    assert request.response_topic == "reply/al@ice/c-1"
    assert broker.current.filters[0] == "reply/al@ice/c-1/#"


async def test_an_anonymous_client_keeps_its_plain_inbox(broker: FakeBroker) -> None:
    async with client() as c:
        assert c.username is None
        await c.call(SERVICE, "f", {})
    assert broker.requests[0].response_topic == "reply/test-client"


def test_a_user_name_that_cannot_be_a_topic_level_is_refused(broker: FakeBroker) -> None:
    with pytest.raises(ValueError, match="broker user name 'a/b' cannot be an inbox topic level"):
        Client("mqtt://a%2Fb:pw@broker.invalid:1883")


@pytest.mark.parametrize("reason", [0x86, 0x87])
async def test_a_refused_login_is_unauthenticated_at_once(broker: FakeBroker, reason: int) -> None:
    broker.refuse_connects, broker.refuse_reason = 1, reason
    c = Client("mqtt://ann:s3cret@broker.invalid:1883")
    with pytest.raises(Unauthenticated, match="refused the broker user 'ann'") as caught:
        await c.connect()
    assert caught.value.details == {"broker": "mqtt://ann:***@broker.invalid:1883", "reasonCode": reason}
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(caught.value)
    assert len(broker.connections) == 1  # no retrying a login the broker refused


async def test_an_anonymous_client_refused_by_the_broker_says_so(broker: FakeBroker) -> None:
    broker.refuse_connects, broker.refuse_reason = 1, NOT_AUTHORIZED
    with pytest.raises(Unauthenticated, match="refused an anonymous client"):
        await client().connect()


async def test_a_refused_inbox_subscription_is_forbidden(broker: FakeBroker) -> None:
    broker.refuse_subscribe = NOT_AUTHORIZED
    with pytest.raises(Forbidden, match="refused this client's subscriptions") as caught:
        await Client("mqtt://ann:pw@broker.invalid:1883").connect()
    assert caught.value.details["reasonCode"] == NOT_AUTHORIZED
    assert broker.current.closed_end_session is False


async def test_a_client_whose_session_is_taken_over_stops_instead_of_taking_it_back(
    broker: FakeBroker,
) -> None:
    broker.responder = lambda conn, request: 0  # never answered
    async with client() as c:
        waiting = asyncio.create_task(c.call(SERVICE, "f", {}, timeout=60))
        await until(lambda: bool(broker.requests))
        broker.current.queue.put_nowait(TransportError("connection lost", SESSION_TAKEN_OVER))
        with pytest.raises(Unavailable, match="took its broker session over") as caught:
            await asyncio.wait_for(waiting, 10)
        assert caught.value.details["reasonCode"] == SESSION_TAKEN_OVER
        assert c._connection is not None
        await asyncio.wait_for(asyncio.shield(c._connection), 10)  # the connection task has ended
        assert len(broker.connections) == 1  # and it never reconnected
        for later in (
            c.call(SERVICE, "f", {}, timeout=60),
            c.publish("events/x", b"", timeout=60),
            c.listen("events/y", lambda message: None, timeout=60),
        ):
            with pytest.raises(Unavailable, match="took its broker session over"):
                await asyncio.wait_for(later, 10)
    assert len(broker.connections) == 1


async def lose_connection(c: Client, times: int, reason: int | None = None) -> None:
    """Close the client's connection ``times`` times (with ``reason``), each time once it reconnected."""
    for _ in range(times):
        await until(lambda: c._transport is not None)
        await lose(c, c._transport, reason)


async def lose(c: Client, connection: object, reason: int | None) -> None:
    assert isinstance(connection, FakeConnection)
    connection.queue.put_nowait(TransportError("connection lost", reason))
    await until(lambda: c._transport is not connection)


async def test_silent_closes_right_after_every_reconnect_are_taken_for_a_takeover(broker: FakeBroker) -> None:
    """Brokers that close a taken-over connection without DISCONNECT 0x8E (Mosquitto before 2.0.15)."""
    async with client() as c:
        await lose_connection(c, TAKEOVER_LOSSES - 1)
        await until(lambda: c._transport is not None)
        assert c._connection is not None and not c._connection.done()
        broker.current.queue.put_nowait(TransportError("connection lost"))
        await asyncio.wait_for(asyncio.shield(c._connection), 10)
        with pytest.raises(Unavailable, match=r"took its broker session over .*3 times in a row") as caught:
            await c.call(SERVICE, "f", {}, timeout=60)
        assert "reasonCode" not in caught.value.details
    assert len(broker.connections) == TAKEOVER_LOSSES


async def test_a_broker_that_is_away_between_losses_is_no_takeover(broker: FakeBroker) -> None:
    async with client() as c:
        await lose_connection(c, TAKEOVER_LOSSES - 2)
        broker.refuse_connects = 1  # the next reconnect fails (the broker restarted, say): count again
        await lose_connection(c, 1)
        await lose_connection(c, TAKEOVER_LOSSES - 1)
        await until(lambda: c._transport is not None)
        assert (await c.call(SERVICE, "f", {"n": 1}))["params"] == {"n": 1}
        # A loss with a reason code other than "taken over" is no silent close either.
        await lose_connection(c, TAKEOVER_LOSSES, reason=0x8D)  # keep alive timeout
        await until(lambda: c._transport is not None)
        assert (await c.call(SERVICE, "f", {"n": 2}))["params"] == {"n": 2}


async def test_a_service_serving_but_between_two_runtimes_is_tried_again(broker: FakeBroker) -> None:
    """A version switch: the state says serving, the topic has no subscriber for a moment."""
    broker.retained = {"mesh/services": b"1", "mesh/services/users": service_state()}

    def switching_then_answer(conn: FakeConnection, request: Message) -> int:
        return NO_MATCHING_SUBSCRIBERS if len(broker.requests) <= 3 else echo(conn, request)

    broker.responder = switching_then_answer
    async with client() as c:
        assert (await c.call(SERVICE, "getUser", {"n": 1}, timeout=30))["params"] == {"n": 1}
    assert len(broker.requests) == 4


async def test_a_switch_that_never_settles_ends_in_the_explained_error(
    broker: FakeBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "SWITCH_WAIT_S", 0.3)
    broker.retained = {"mesh/services": b"1", "mesh/services/users": service_state()}
    broker.responder = lambda conn, request: NO_MATCHING_SUBSCRIBERS
    async with client() as c:
        with pytest.raises(Unavailable, match="may be switching versions"):
            await c.call(SERVICE, "getUser", {}, timeout=30)
    assert len(broker.requests) > 1
