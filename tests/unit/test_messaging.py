"""``dormant.messaging`` in isolation: child callIds, the retry and breaker machinery on a fake clock,
what ``Messaging.call`` hands the client (identity, callId, headers, hooks), event and binary topics,
and the reassembly of binary transfers from chunks fed by hand."""

from __future__ import annotations

from typing import Any, cast

import pytest

from dormant import wire
from dormant.callid import MAX_CALL_ID_BYTES, CallId, child_call_id
from dormant.client import Client
from dormant.context import UserContext
from dormant.errors import BusinessLogicError, TimeoutError, Unavailable, ValidationError
from dormant.messaging import (
    BinaryInbox,
    BreakerState,
    CircuitBreaker,
    HookMessage,
    Hooks,
    Messaging,
    Resiliency,
    ResiliencyPolicy,
    Subscription,
    binary_chunks,
)
from dormant.transport import Message

ALICE = UserContext(user_id="alice", roles=("user",), token="tok-alice")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def resiliency(clock: FakeClock, policy: ResiliencyPolicy, **targets: ResiliencyPolicy) -> Resiliency:
    return Resiliency(targets, default=policy, clock=clock, sleep=clock.sleep, jitter=lambda: 0.5)


# --------------------------------------------------------------------------- child callIds


def test_child_call_ids_are_deterministic_and_distinct() -> None:
    first = child_call_id("parent-1", "billing.charge", 1)
    assert first == child_call_id("parent-1", "billing.charge", 1)
    others = {
        child_call_id("parent-1", "billing.charge", 2),
        child_call_id("parent-2", "billing.charge", 1),
        child_call_id("parent-1", "billing.refund", 1),
    }
    assert first not in others and len(others) == 3
    assert first.startswith("c-") and first.isprintable()
    assert CallId.from_text(first).text == first  # survives the text -> bytes -> text rule
    assert len(first.encode()) <= MAX_CALL_ID_BYTES
    assert first == CallId.from_text("parent-1").child("billing.charge#1").text
    with pytest.raises(ValueError):
        child_call_id("parent-1", "billing.charge", 0)


def test_a_rerun_of_the_parent_derives_the_same_child_ids() -> None:
    def run() -> list[str]:
        messaging = Messaging(cast(Client, object()), ALICE, "parent-7")
        return [messaging.next_call_id(t) for t in ("a.f", "b.g", "a.f", "a.f")]

    ids = run()
    assert ids == run()
    assert len(set(ids)) == 4
    assert ids[0] == child_call_id("parent-7", "a.f", 1) and ids[3] == child_call_id("parent-7", "a.f", 3)


def test_ordinals_count_per_target() -> None:
    # A call to another target made (or skipped) in between does not shift a target's ids.
    plain = Messaging(cast(Client, object()), ALICE, "p")
    mixed = Messaging(cast(Client, object()), ALICE, "p")
    mixed.next_call_id("other.fn")
    assert plain.next_call_id("a.f") == mixed.next_call_id("a.f")


# --------------------------------------------------------------------------- policies and backoff


def test_policy_is_validated() -> None:
    for bad in (
        {"max_retries": -1},
        {"initial_backoff_s": 0},
        {"initial_backoff_s": 3.0, "max_backoff_s": 1.0},
        {"breaker_failures": 0},
        {"breaker_reset_s": 0},
        {"timeout_s": -1},
    ):
        with pytest.raises(ValueError):
            ResiliencyPolicy(**bad)


def test_backoff_grows_exponentially_within_jitter_bounds_and_is_capped() -> None:
    policy = ResiliencyPolicy(initial_backoff_s=0.1, max_backoff_s=1.0)
    for retry in range(12):
        ceiling = min(1.0, 0.1 * 2**retry)
        low, high = policy.backoff(retry, 0.0), policy.backoff(retry, 0.999999)
        assert low == pytest.approx(ceiling / 2)
        assert ceiling / 2 <= high <= ceiling
    assert policy.backoff(1000, 0.999) <= 1.0


def test_policy_lookup_exact_then_service_then_default() -> None:
    default, service, exact = (
        ResiliencyPolicy(),
        ResiliencyPolicy(max_retries=1),
        ResiliencyPolicy(max_retries=2),
    )
    table = Resiliency({"billing": service, "billing.charge": exact}, default=default)
    assert table.policy_for("billing.charge") is exact
    assert table.policy_for("billing.refund") is service
    assert table.policy_for("users.get") is default
    assert table.breaker("a.b") is table.breaker("a.b")


# --------------------------------------------------------------------------- the breaker


def state_of(breaker: CircuitBreaker) -> BreakerState:
    return breaker.state  # read through a call: the state changes under mypy's narrowing


def test_breaker_state_machine() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("svc.fn", failures=3, reset_s=10.0, clock=clock)
    for _ in range(2):
        breaker.admit()
        breaker.failed()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.admit()
    breaker.succeeded()  # a success resets the count of consecutive failures
    for _ in range(3):
        breaker.admit()
        breaker.failed()
    assert state_of(breaker) is BreakerState.OPEN
    with pytest.raises(Unavailable, match=r"circuit open for svc\.fn") as refused:
        breaker.admit()
    assert refused.value.details["retryInS"] == pytest.approx(10.0)

    clock.now += 10.0
    assert state_of(breaker) is BreakerState.HALF_OPEN
    breaker.admit()  # the one probe
    with pytest.raises(Unavailable, match="circuit open"):
        breaker.admit()  # a second caller while the probe is out
    breaker.failed()
    assert state_of(breaker) is BreakerState.OPEN  # a failed probe opens it again, for another reset period
    clock.now += 9.9
    assert state_of(breaker) is BreakerState.OPEN

    clock.now += 0.1
    breaker.admit()
    breaker.abandoned()  # a cancelled probe gives its slot back
    breaker.admit()
    breaker.succeeded()
    assert state_of(breaker) is BreakerState.CLOSED
    breaker.admit()


# --------------------------------------------------------------------------- Resiliency.run


async def test_retries_unavailable_with_backoff_then_succeeds() -> None:
    clock = FakeClock()
    table = resiliency(
        clock, ResiliencyPolicy(max_retries=3, initial_backoff_s=0.2, max_backoff_s=5, timeout_s=7)
    )
    timeouts: list[float] = []

    async def attempt(timeout: float) -> str:
        timeouts.append(timeout)
        if len(timeouts) < 3:
            raise Unavailable("down")
        return "ok"

    assert await table.run("svc.fn", attempt) == "ok"
    assert timeouts == [7, 7, 7]
    assert clock.slept == pytest.approx([0.15, 0.3])  # jitter 0.5: 3/4 of 0.2, then of 0.4
    assert table.breaker("svc.fn").state is BreakerState.CLOSED


async def test_gives_up_after_max_retries_and_does_not_retry_other_errors() -> None:
    clock = FakeClock()
    table = resiliency(clock, ResiliencyPolicy(max_retries=2, breaker_failures=100))
    attempts = 0

    async def timing_out(timeout: float) -> None:
        nonlocal attempts
        attempts += 1
        raise TimeoutError("slow")

    with pytest.raises(TimeoutError):
        await table.run("svc.slow", timing_out)
    assert attempts == 3

    async def refusing(timeout: float) -> None:
        nonlocal attempts
        attempts += 1
        raise BusinessLogicError("no")

    attempts = 0
    for _ in range(10):
        with pytest.raises(BusinessLogicError):
            await table.run("svc.rule", refusing)
    assert attempts == 10  # never retried, and an answer of the callee's own never opens its breaker
    assert table.breaker("svc.rule").state is BreakerState.CLOSED


async def test_the_breaker_opens_across_calls_and_refuses_at_once() -> None:
    clock = FakeClock()
    table = resiliency(clock, ResiliencyPolicy(max_retries=0, breaker_failures=2, breaker_reset_s=30))
    attempts = 0

    async def down(timeout: float) -> None:
        nonlocal attempts
        attempts += 1
        raise Unavailable("down")

    for _ in range(2):
        with pytest.raises(Unavailable, match="down"):
            await table.run("svc.fn", down)
    with pytest.raises(Unavailable, match=r"circuit open for svc\.fn"):
        await table.run("svc.fn", down)
    assert attempts == 2
    clock.now += 30
    with pytest.raises(Unavailable, match="down"):  # the half-open probe reaches the target
        await table.run("svc.fn", down)
    assert attempts == 3


async def test_retries_stop_when_the_breaker_opens_midway() -> None:
    clock = FakeClock()
    table = resiliency(clock, ResiliencyPolicy(max_retries=5, breaker_failures=2))
    attempts = 0

    async def down(timeout: float) -> None:
        nonlocal attempts
        attempts += 1
        raise Unavailable("down")

    with pytest.raises(Unavailable, match="circuit open"):
        await table.run("svc.fn", down)
    assert attempts == 2


async def test_the_parent_budget_bounds_attempts_and_waits() -> None:
    clock = FakeClock()
    table = resiliency(
        clock, ResiliencyPolicy(max_retries=10, initial_backoff_s=1, max_backoff_s=1, timeout_s=5)
    )
    timeouts: list[float] = []

    async def down(timeout: float) -> None:
        timeouts.append(timeout)
        clock.now += 0.5
        raise Unavailable("down")

    with pytest.raises(Unavailable):
        await table.run("svc.fn", down, budget_s=2.0)
    assert timeouts[0] == 2.0  # min(policy timeout, what is left of the budget)
    assert sum(clock.slept) + 0.5 * len(timeouts) <= 2.0
    with pytest.raises(TimeoutError, match="deadline"):
        await table.run("svc.other", down, budget_s=0.0)


# --------------------------------------------------------------------------- Messaging.call


class RecordingClient:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls: list[dict[str, Any]] = []

    async def call(self, service: str, function: str, params: Any = None, **kwargs: Any) -> Any:
        self.calls.append({"service": service, "function": function, "params": params, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_call_carries_the_caller_token_and_one_child_call_id_across_retries() -> None:
    client = RecordingClient([Unavailable("down"), {"ok": True}])
    clock = FakeClock()
    messaging = Messaging(
        cast(Client, client),
        ALICE,
        "parent-1",
        resiliency=resiliency(clock, ResiliencyPolicy(initial_backoff_s=0.01, timeout_s=3)),
    )
    assert await messaging.call("billing.charge", {"amount": 5}, headers={"x-tenant": "t1"}) == {"ok": True}
    first, second = client.calls
    assert first["call_id"] == second["call_id"] == child_call_id("parent-1", "billing.charge", 1)
    assert first["authorization"] == "Bearer tok-alice"
    assert (first["service"], first["function"], first["params"]) == ("billing", "charge", {"amount": 5})
    assert first["headers"] == {"x-tenant": "t1"} and first["timeout"] == 3
    assert "tok-alice" not in repr(messaging)


async def test_an_anonymous_caller_sends_no_authorization() -> None:
    client = RecordingClient([1])
    await Messaging(cast(Client, client), UserContext(), "p").send_and_wait("a.f", {})
    assert client.calls[0]["authorization"] is None


async def test_targets_and_reserved_headers_are_refused() -> None:
    messaging = Messaging(cast(Client, RecordingClient([])), ALICE, "p")
    for target in ("nodot", "Bad_Service.fn", "svc.v1", "svc."):
        with pytest.raises(ValidationError):
            await messaging.call(target, {})
    for header in ("authorization", "Authorization", "deadline", "user-id"):
        with pytest.raises(ValidationError, match="set by Dormant"):
            await messaging.call("a.f", {}, headers={header: "Bearer someone-else"})


async def test_hooks_see_and_shape_messages() -> None:
    client = RecordingClient([{"n": 1}, BusinessLogicError("nope", {"why": "rule"})])
    shared = Hooks()
    seen: list[HookMessage] = []

    async def add_trace(message: HookMessage) -> None:
        message.headers["traceparent"] = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"

    async def record(message: HookMessage) -> None:
        seen.append(message)

    shared.add("before_send", add_trace)
    messaging = Messaging(cast(Client, client), ALICE, "p", hooks=shared)
    messaging.add_hook("after_receive", record)
    await messaging.call("a.f", {"x": 1})
    with pytest.raises(BusinessLogicError):
        await messaging.call("a.f", {"x": 2})
    assert client.calls[0]["headers"]["traceparent"].startswith("00-")
    assert [(m.kind, m.body, m.headers["status"]) for m in seen] == [
        ("response", {"n": 1}, "ok"),
        ("response", {"type": "BusinessLogicError", "message": "nope", "details": {"why": "rule"}}, "error"),
    ]
    # A hook added through one call's Messaging stays with it: the runtime's hooks are unchanged.
    assert len(Messaging(cast(Client, client), ALICE, "q", hooks=shared).hooks._hooks["after_receive"]) == 0

    async def forge(message: HookMessage) -> None:
        message.headers["authorization"] = "Bearer stolen"

    messaging.add_hook("before_send", forge)
    with pytest.raises(ValidationError):
        await messaging.call("a.f", {})
    with pytest.raises(ValueError):
        messaging.add_hook("after_send", record)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- topics


def test_event_and_binary_topics() -> None:
    assert wire.event_topic("user_created") == "events/user_created"
    assert wire.event_topic("user-service/user_created") == "events/user-service/user_created"
    assert wire.parse_event_topic("events/user-service/user_created") == "user-service/user_created"
    assert wire.binary_topic("avatars") == "binary/avatars"
    assert wire.parse_binary_topic("binary/avatars") == "avatars"
    for bad in ("", "a.b", "a/+", "#", "a//b", "/a", "a/", "é", "x" * 201, "a b"):
        with pytest.raises(ValidationError):
            wire.event_topic(bad)
        assert wire.parse_event_topic("events/" + bad) is None
    assert wire.parse_event_topic("service/x/y") is None and wire.parse_binary_topic("events/x") is None


# --------------------------------------------------------------------------- binary reassembly


class NoClient:
    async def listen(self, topic: str, listener: Any, *, timeout: float | None = None) -> None:
        pass

    async def unlisten(self, topic: str, listener: Any) -> None:
        pass


def inbox() -> tuple[BinaryInbox, Subscription]:
    subscription = Subscription(cast(Client, NoClient()), "binary/blob", 10_000)
    return BinaryInbox("blob", subscription, Hooks(), max_bytes=1 << 20), subscription


def feed(subscription: Subscription, chunks: list[tuple[bytes, list[tuple[str, str]]]]) -> None:
    for payload, props in chunks:
        subscription._deliver(Message("binary/blob", payload, user_properties=props))


DATA = bytes(range(256)) * 40  # 10240 bytes: ten chunks of 1024


async def test_chunks_reassemble_in_order_whatever_order_they_arrive_in() -> None:
    chunks = binary_chunks("t1", DATA, 1024, [("user-id", "alice"), ("x-kind", "avatar")])
    assert len(chunks) == 10
    receiver, subscription = inbox()
    feed(subscription, [*reversed(chunks), chunks[3]])  # and a QoS 1 redelivery of one
    transfer = await receiver.receive_transfer(timeout=1)
    assert transfer.data == DATA and transfer.transfer_id == "t1"
    assert transfer.user_id == "alice" and transfer.headers == {"x-kind": "avatar"}
    empty, subscription = inbox()
    feed(subscription, binary_chunks("t2", b"", 1024))
    assert await empty.receive(timeout=1) == b""


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda c: c.__setitem__(4, (b"X" + c[4][0][1:], c[4][1])), "corrupt"),
        (lambda c: c.insert(0, (c[2][0][::-1], list(c[2][1]))), "corrupt"),
        (
            lambda c: c.__setitem__(0, (c[0][0], [*c[0][1][:2], ("chunk-total", "99"), *c[0][1][3:]])),
            "disagrees",
        ),
        (lambda c: c.__setitem__(0, (c[0][0], [p for p in c[0][1] if p[0] != "chunk-index"])), "malformed"),
        (
            lambda c: c.__setitem__(0, (c[0][0], [("chunk-index", "10"), *c[0][1][:1], *c[0][1][2:]])),
            "bounds",
        ),
    ],
)
async def test_a_bad_chunk_is_a_validation_error(tamper: Any, message: str) -> None:
    chunks = binary_chunks("t1", DATA, 1024)
    tamper(chunks)
    receiver, subscription = inbox()
    feed(subscription, chunks)
    with pytest.raises(ValidationError, match=message):
        await receiver.receive(timeout=1)


async def test_a_conflicting_duplicate_is_refused() -> None:
    chunks = binary_chunks("t1", DATA, 1024)
    other = binary_chunks("t1", DATA[:1024][::-1] + DATA[1024:], 1024)  # same transfer id, other bytes
    receiver, subscription = inbox()
    feed(subscription, [chunks[0], (other[0][0], [*chunks[0][1][:3], other[0][1][3], *chunks[0][1][4:]])])
    with pytest.raises(ValidationError, match="arrived twice"):
        await receiver.receive(timeout=1)


async def test_a_missing_chunk_times_out_naming_it() -> None:
    chunks = binary_chunks("t1", DATA, 1024)
    receiver, subscription = inbox()
    feed(subscription, chunks[:6] + chunks[7:])
    with pytest.raises(TimeoutError) as missing:
        await receiver.receive(timeout=0.05)
    assert missing.value.details == {"transferId": "t1", "missing": [6], "total": 10}


def test_chunk_size_is_bounded() -> None:
    for size in (0, -1, 5 * 1024 * 1024):
        with pytest.raises(ValidationError):
            binary_chunks("t", b"x", size)
