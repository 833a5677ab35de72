"""``Messaging``: what a handler uses to reach other functions and to publish and receive events.

The seed's ``IMessaging`` in Python, bound to the call being served (built per call from the runtime's
one ``Client``, its one ``Resiliency`` and the call's ``UserContext`` and callId):

* ``call`` / ``send_and_wait``: another function, its typed errors raised as the same types. The call
  carries the original caller's bearer token (``authorization``), so the callee authorizes the user,
  not the calling service; and a child callId derived from the parent callId, the target and the
  ordinal of the call among this run's calls to that target (``callid.child_call_id``). A parent run
  again after a crash makes the same calls in the same order, derives the same child callIds, and the
  callees answer the repeats from their de-duplication stores: exactly-once effects down a chain.
* Retries with exponential backoff and jitter for ``Unavailable`` and ``TimeoutError`` (safe: every
  attempt reuses the child callId) and a circuit breaker per target, configured per target with
  ``ResiliencyPolicy`` (Dapr's resiliency policies are the model). Breakers live in ``Resiliency``,
  which the runtime holds for all its calls.
* ``send``: fire and forget. ``send("svc.fn", body)`` is a one-way call (no answer; still the child
  callId and the caller's token); ``send("name", body)`` publishes an event on ``events/{name}``.
  ``subscribe`` / ``receive`` take events as ``Event(name, body, headers, user_id, event_id)``.
* ``send_binary`` / ``receive_binary``: a byte string in chunks on ``binary/{name}``, each carrying the
  transfer id, its index, the total, its own sha256 and the whole's; reassembled in order; a corrupt,
  conflicting or missing chunk is a typed error (``ValidationError``, or ``TimeoutError`` naming the
  missing chunks), never a hang.
* ``add_hook("before_send" | "after_receive", fn)``: async hooks seeing each ``HookMessage``.

Events and transfers carry the sender's *subject* (``user-id``), never the token: every subscriber of
a topic reads its user properties, and a bearer token handed to all of them would let any subscriber
act as that user until the token expires. A subject is a claim the receiver cannot verify on its own:
it is as trustworthy as the broker's ACL on ``events/#`` and ``binary/#`` (only runtimes publish).
"""

from __future__ import annotations

import asyncio
import builtins
import enum
import hashlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeVar

import orjson

from . import _tracing, wire
from ._modeljson import request_body
from .callid import child_call_id
from .client import Client
from .context import UserContext
from .decorators import is_valid_function_name, is_valid_service_name
from .errors import DormantError, TimeoutError, Unavailable, ValidationError
from .transport import NO_MATCHING_SUBSCRIBERS, Message

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "BinaryInbox",
    "BreakerState",
    "CircuitBreaker",
    "Event",
    "HookKind",
    "HookMessage",
    "Hooks",
    "Messaging",
    "Resiliency",
    "ResiliencyPolicy",
    "Subscription",
    "binary_chunks",
]

log = logging.getLogger("dormant.messaging")

T = TypeVar("T")

DEFAULT_CHUNK_SIZE = 64 * 1024
MAX_CHUNK_SIZE = 4 * 1024 * 1024
DEFAULT_MAX_TRANSFER_BYTES = 64 * 1024 * 1024
DEFAULT_RECEIVE_TIMEOUT_S = 30.0
EVENT_QUEUE_SIZE = 1000
CHUNK_QUEUE_SIZE = 8192
RESERVED_HEADERS = frozenset(
    {wire.PROP_AUTHORIZATION, wire.PROP_DEADLINE, wire.PROP_STATUS} | wire.MESSAGING_PROPERTIES
)
"""Header names the messaging layer sets itself: a handler (or a hook) may not forge them."""


# --------------------------------------------------------------------------- resiliency


@dataclass(frozen=True, slots=True)
class ResiliencyPolicy:
    """How calls to one target are retried and when its breaker opens.

    ``max_retries`` attempts after the first, for ``Unavailable`` and ``TimeoutError`` only; the wait
    before retry k (0, 1, ...) is drawn from [b/2, b] with b = min(``max_backoff_s``,
    ``initial_backoff_s`` * 2**k). ``breaker_failures`` consecutive failed attempts open the breaker;
    after ``breaker_reset_s`` one probe call is let through (half-open): success closes it, failure
    opens it again. ``timeout_s`` bounds each attempt.
    """

    max_retries: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    breaker_failures: int = 5
    breaker_reset_s: float = 30.0
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {self.max_retries}")
        if not 0 < self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("backoff needs 0 < initial_backoff_s <= max_backoff_s")
        if self.breaker_failures < 1:
            raise ValueError(f"breaker_failures must be 1 or more, got {self.breaker_failures}")
        if self.breaker_reset_s <= 0 or self.timeout_s <= 0:
            raise ValueError("breaker_reset_s and timeout_s must be positive")

    def backoff(self, retry: int, jitter: float) -> float:
        """The wait before retry number ``retry`` (0-based), ``jitter`` in [0, 1)."""
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * 2.0 ** min(retry, 62))
        return ceiling / 2 + ceiling / 2 * jitter


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """One target's breaker: closed → open after ``failures`` consecutive failures → half-open once
    ``reset_s`` has passed, letting one probe through → closed on its success, open on its failure."""

    def __init__(self, target: str, failures: int, reset_s: float, clock: Callable[[], float]) -> None:
        self.target = target
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._consecutive = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self.reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def admit(self) -> None:
        """Let an attempt through, or raise ``Unavailable`` at once while the circuit is open (or
        half-open with its one probe already out)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return
        assert self._opened_at is not None
        retry_in = max(0.0, self._opened_at + self.reset_s - self._clock())
        raise Unavailable(
            f"circuit open for {self.target}",
            {"target": self.target, "retryInS": round(retry_in, 3), "state": state.value},
        )

    def succeeded(self) -> None:
        """The target answered (a result or an error of its own): it is up."""
        self._consecutive = 0
        self._opened_at = None
        self._probing = False

    def failed(self) -> None:
        """The target did not answer (``Unavailable`` or ``TimeoutError``)."""
        self._consecutive += 1
        if self._probing or self._consecutive >= self.failures:
            self._opened_at = self._clock()
        self._probing = False

    def abandoned(self) -> None:
        """The attempt ended with no verdict (cancelled): a probe slot is given back."""
        self._probing = False


class Resiliency:
    """Retry policies and circuit breakers of every target a runtime calls; held by the runtime and
    shared by every call's ``Messaging``, so a breaker sees all the calls to its target.

    ``policies`` maps a target, ``"service.function"`` or a whole ``"service"``, to its policy (the
    exact target first, then its service, then ``default``). ``clock`` (monotonic seconds), ``sleep``
    and ``jitter`` (a number in [0, 1)) are injectable for tests.
    """

    def __init__(
        self,
        policies: Mapping[str, ResiliencyPolicy] | None = None,
        *,
        default: ResiliencyPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.policies = dict(policies or {})
        self.default = default or ResiliencyPolicy()
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._breakers: dict[str, CircuitBreaker] = {}

    def policy_for(self, target: str) -> ResiliencyPolicy:
        policy = self.policies.get(target) or self.policies.get(target.partition(".")[0])
        return policy or self.default

    def breaker(self, target: str) -> CircuitBreaker:
        breaker = self._breakers.get(target)
        if breaker is None:
            policy = self.policy_for(target)
            breaker = CircuitBreaker(target, policy.breaker_failures, policy.breaker_reset_s, self._clock)
            self._breakers[target] = breaker
        return breaker

    async def run(
        self,
        target: str,
        attempt: Callable[[float], Awaitable[T]],
        *,
        timeout: float | None = None,
        budget_s: float | None = None,
    ) -> T:
        """Run ``attempt(attempt_timeout)`` under ``target``'s breaker, retrying ``Unavailable`` and
        ``TimeoutError`` by its policy. ``timeout`` replaces the policy's per-attempt timeout;
        ``budget_s`` bounds the whole (the parent call's remaining time): no attempt or wait runs
        past it."""
        policy = self.policy_for(target)
        breaker = self.breaker(target)
        per_attempt = policy.timeout_s if timeout is None else timeout
        end = None if budget_s is None else self._clock() + budget_s
        retry = 0
        while True:
            left = None if end is None else end - self._clock()
            if left is not None and left <= 0:
                raise TimeoutError(
                    f"no time left for a call to {target} within the caller's deadline", {"target": target}
                )
            breaker.admit()
            try:
                result = await attempt(per_attempt if left is None else min(per_attempt, left))
            except (Unavailable, TimeoutError):
                breaker.failed()
                if retry >= policy.max_retries:
                    raise
                wait = policy.backoff(retry, self._jitter())
                if end is not None and self._clock() + wait >= end:
                    raise
                retry += 1
                await self._sleep(wait)
                continue
            except DormantError:
                breaker.succeeded()  # the target answered: an error of its own is no sign of an outage
                raise
            except BaseException:
                breaker.abandoned()
                raise
            breaker.succeeded()
            return result


# --------------------------------------------------------------------------- messages and hooks

HookKind = Literal["before_send", "after_receive"]
HOOK_KINDS: tuple[HookKind, ...] = ("before_send", "after_receive")



def declared_resiliency(handler_class: type) -> Resiliency:
    """The runtime's ``Resiliency`` from what a handler class declares: ``resiliency = {"payments":
    ResiliencyPolicy(max_retries=5), "payments.refund": ResiliencyPolicy(max_retries=0)}`` (a key
    ``"*"`` is the default for every other target); no declaration: the defaults."""
    declared = getattr(handler_class, "resiliency", None)
    if declared is None:
        return Resiliency()
    if not isinstance(declared, Mapping) or not all(
        isinstance(key, str) and isinstance(value, ResiliencyPolicy) for key, value in declared.items()
    ):
        raise ValidationError(
            f"{handler_class.__name__}.resiliency must map targets to ResiliencyPolicy objects"
        )
    policies = {key: value for key, value in declared.items() if key != "*"}
    return Resiliency(policies, default=declared.get("*"))

@dataclass(slots=True)
class HookMessage:
    """What a hook sees. ``kind``: ``call`` (a request, before it is sent), ``send`` (a one-way call),
    ``event``, ``binary`` (a whole transfer) or ``response`` (the answer a call's caller gets: the
    result, or the typed error's payload with ``headers["status"] == "error"``). ``target`` is
    ``service.function`` or the event or transfer name. A ``before_send`` hook may change ``body`` and
    ``headers``: what it leaves is sent (reserved headers such as ``authorization`` are refused)."""

    kind: Literal["call", "send", "event", "binary", "response"]
    target: str
    body: Any
    headers: dict[str, str]
    call_id: str | None = None


Hook = Callable[[HookMessage], Awaitable[None]]


class Hooks:
    """Hooks by kind. The runtime holds one for hooks of every call; each ``Messaging`` starts from a
    copy of it, so a hook added through one call's ``Messaging`` lasts for that call only."""

    def __init__(self) -> None:
        self._hooks: dict[HookKind, list[Hook]] = {kind: [] for kind in HOOK_KINDS}

    def add(self, kind: HookKind, hook: Hook) -> None:
        if kind not in self._hooks:
            raise ValueError(f"a hook kind is one of {', '.join(HOOK_KINDS)}, not {kind!r}")
        self._hooks[kind].append(hook)

    def copy(self) -> Hooks:
        copied = Hooks()
        for kind, hooks in self._hooks.items():
            copied._hooks[kind] = list(hooks)
        return copied

    async def run(self, kind: HookKind, message: HookMessage) -> None:
        """Run the hooks of ``kind`` in the order they were added; an exception stops the message."""
        for hook in self._hooks[kind]:
            await hook(message)


@dataclass(frozen=True, slots=True)
class Event:
    """An event received: its name, JSON body, the sender's headers, the sender's caller's subject
    (None for an anonymous one) and the event id (the same when a re-run sender repeats it)."""

    name: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    user_id: str | None = None
    event_id: str | None = None


# --------------------------------------------------------------------------- subscriptions


class Subscription:
    """Messages of one topic, queued from the shared client's connection; ``close`` (or leaving
    ``async with``) unsubscribes. A full queue drops the newest message with a warning: the client's
    reader never waits for a slow consumer."""

    def __init__(self, client: Client, topic: str, maxsize: int) -> None:
        self.client = client
        self.topic = topic
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        self._open = False
        self.dropped = 0

    def _deliver(self, message: Message) -> None:
        try:
            self._queue.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning(
                "dropped a message on %s: %d queued and not yet taken", self.topic, self._queue.qsize()
            )

    async def open(self) -> None:
        await self.client.listen(self.topic, self._deliver)
        self._open = True

    async def close(self) -> None:
        if self._open:
            self._open = False
            await self.client.unlisten(self.topic, self._deliver)

    async def next_message(self, timeout: float | None) -> Message:
        """The next message; ``TimeoutError`` when none comes within ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except builtins.TimeoutError:
            raise TimeoutError(f"nothing arrived on {self.topic} within {timeout:g}s") from None


class EventSubscription:
    """Events of one name: ``async for event in subscription``, or ``await receive(timeout)``."""

    def __init__(self, name: str, subscription: Subscription, hooks: Hooks) -> None:
        self.name = name
        self._subscription = subscription
        self._hooks = hooks
        self._task: asyncio.Task[None] | None = None

    async def receive(self, timeout: float | None = DEFAULT_RECEIVE_TIMEOUT_S) -> Event:
        """The next event (malformed ones are skipped with a warning); ``TimeoutError`` if none comes."""
        loop = asyncio.get_running_loop()
        end = None if timeout is None else loop.time() + timeout
        while True:
            left = None if end is None else max(0.0, end - loop.time())
            message = await self._subscription.next_message(left)
            event = _decode_event(self.name, message)
            if event is None:
                continue
            await self._hooks.run(
                "after_receive",
                HookMessage("event", self.name, event.body, dict(event.headers), event.event_id),
            )
            return event

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        while True:
            yield await self.receive(None)

    def _start(self, handler: Callable[[Event], Awaitable[None]]) -> None:
        async def pump() -> None:
            async for event in self:
                try:
                    await handler(event)
                except Exception:
                    log.exception("an event handler for %s failed on event %s", self.name, event.event_id)

        self._task = asyncio.create_task(pump(), name=f"dormant-events-{self.name}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self._subscription.close()

    async def __aenter__(self) -> EventSubscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


def _decode_event(name: str, message: Message) -> Event | None:
    try:
        body = orjson.loads(message.payload) if message.payload else None
    except orjson.JSONDecodeError:
        log.warning("skipped an event on %s whose payload is not JSON", message.topic)
        return None
    headers: dict[str, str] = {}
    user_id = event_id = None
    for key, value in message.user_properties:
        if key == wire.PROP_USER_ID:
            user_id = value
        elif key == wire.PROP_EVENT_ID:
            event_id = value
        else:
            headers[key] = value
    return Event(name, body, headers, user_id, event_id)


# --------------------------------------------------------------------------- binary transfers


def binary_chunks(
    transfer_id: str,
    data: bytes,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    properties: Sequence[tuple[str, str]] = (),
) -> list[tuple[bytes, list[tuple[str, str]]]]:
    """The chunks of one transfer: payloads and their user properties (``properties`` added to each).

    Every chunk says which transfer it belongs to, its index, the total, its own sha256 (so a corrupt
    chunk is named as it arrives) and the size and sha256 of the whole (checked after reassembly). An
    empty byte string is one empty chunk."""
    if not 0 < chunk_size <= MAX_CHUNK_SIZE:
        raise ValidationError(f"chunk_size must be 1 to {MAX_CHUNK_SIZE} bytes, got {chunk_size}")
    pieces = [data[i : i + chunk_size] for i in range(0, len(data), chunk_size)] or [b""]
    whole = hashlib.sha256(data).hexdigest()
    return [
        (
            piece,
            [
                (wire.PROP_TRANSFER_ID, transfer_id),
                (wire.PROP_CHUNK_INDEX, str(index)),
                (wire.PROP_CHUNK_TOTAL, str(len(pieces))),
                (wire.PROP_CHUNK_SHA256, hashlib.sha256(piece).hexdigest()),
                (wire.PROP_TRANSFER_SIZE, str(len(data))),
                (wire.PROP_TRANSFER_SHA256, whole),
                *properties,
            ],
        )
        for index, piece in enumerate(pieces)
    ]


@dataclass(slots=True)
class _Transfer:
    total: int
    size: int
    sha256: str
    chunks: dict[int, bytes] = field(default_factory=dict)
    received_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Transfer:
    """A binary transfer received: its name, bytes, id, the sender's caller's subject and headers."""

    name: str
    data: bytes
    transfer_id: str
    user_id: str | None
    headers: dict[str, str]


class BinaryInbox:
    """Transfers of one name, reassembled; open it (``async with``) before the sender starts, then
    ``await receive(timeout)`` for each transfer."""

    def __init__(self, name: str, subscription: Subscription, hooks: Hooks, max_bytes: int) -> None:
        self.name = name
        self.max_bytes = max_bytes
        self._subscription = subscription
        self._hooks = hooks
        self._transfers: dict[str, _Transfer] = {}

    async def receive(self, timeout: float = DEFAULT_RECEIVE_TIMEOUT_S) -> bytes:
        """The bytes of the next complete transfer."""
        return (await self.receive_transfer(timeout)).data

    async def receive_transfer(self, timeout: float = DEFAULT_RECEIVE_TIMEOUT_S) -> Transfer:
        """The next complete transfer. ``ValidationError`` for a corrupt chunk, a chunk conflicting with
        one already received, inconsistent totals, too many bytes or a whole that fails its sha256;
        ``TimeoutError`` naming the missing chunks when the transfer does not complete in time."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            try:
                message = await self._subscription.next_message(max(0.0, end - loop.time()))
            except TimeoutError:
                raise self._incomplete(timeout) from None
            done = self._add(message)
            if done is not None:
                await self._hooks.run(
                    "after_receive",
                    HookMessage("binary", self.name, done.data, dict(done.headers), done.transfer_id),
                )
                return done

    def _add(self, message: Message) -> Transfer | None:
        props = dict(message.user_properties)
        try:
            transfer_id = props[wire.PROP_TRANSFER_ID]
            index = int(props[wire.PROP_CHUNK_INDEX])
            total = int(props[wire.PROP_CHUNK_TOTAL])
            size = int(props[wire.PROP_TRANSFER_SIZE])
            chunk_digest = props[wire.PROP_CHUNK_SHA256]
            whole_digest = props[wire.PROP_TRANSFER_SHA256]
        except (KeyError, ValueError):
            raise ValidationError(f"a malformed chunk arrived on {message.topic}") from None
        where = {"transferId": transfer_id, "index": index}
        if not 0 <= index < total or size < 0 or size > self.max_bytes:
            raise ValidationError(
                f"chunk {index} of {total} of transfer {transfer_id} is out of bounds", where
            )
        if hashlib.sha256(message.payload).hexdigest() != chunk_digest:
            raise ValidationError(f"chunk {index} of transfer {transfer_id} is corrupt", where)
        transfer = self._transfers.setdefault(transfer_id, _Transfer(total, size, whole_digest))
        if (transfer.total, transfer.size, transfer.sha256) != (total, size, whole_digest):
            raise ValidationError(f"chunk {index} of transfer {transfer_id} disagrees on the whole", where)
        known = transfer.chunks.get(index)
        if known is not None:
            if known != message.payload:
                raise ValidationError(
                    f"chunk {index} of transfer {transfer_id} arrived twice, differing", where
                )
            return None  # QoS 1 may deliver a chunk again: the same bytes are no error
        transfer.received_bytes += len(message.payload)
        if transfer.received_bytes > size:
            raise ValidationError(f"transfer {transfer_id} holds more bytes than it announced", where)
        transfer.chunks[index] = message.payload
        if len(transfer.chunks) < total:
            return None
        del self._transfers[transfer_id]
        data = b"".join(transfer.chunks[i] for i in range(total))
        if len(data) != size or hashlib.sha256(data).hexdigest() != whole_digest:
            raise ValidationError(f"transfer {transfer_id} fails its size or sha256 check", where)
        reserved = wire.MESSAGING_PROPERTIES
        headers = {k: v for k, v in message.user_properties if k not in reserved}
        return Transfer(self.name, data, transfer_id, props.get(wire.PROP_USER_ID), headers)

    def _incomplete(self, timeout: float) -> TimeoutError:
        if not self._transfers:
            return TimeoutError(
                f"no transfer arrived on {self.name} within {timeout:g}s", {"name": self.name}
            )
        transfer_id, transfer = next(iter(self._transfers.items()))
        missing = [i for i in range(transfer.total) if i not in transfer.chunks]
        return TimeoutError(
            f"transfer {transfer_id} on {self.name} is missing {len(missing)} of {transfer.total} chunks",
            {"transferId": transfer_id, "missing": missing[:20], "total": transfer.total},
        )

    async def close(self) -> None:
        await self._subscription.close()

    async def __aenter__(self) -> BinaryInbox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


# --------------------------------------------------------------------------- Messaging


class Messaging:
    """Calls, events and binary transfers on behalf of one call (``parent_call_id``) and its caller.

    ``client`` is the runtime's one connected ``dormant.Client``; ``resiliency`` its one
    ``Resiliency`` (breakers shared by all calls); ``hooks`` its runtime-wide hooks (copied);
    ``deadline`` (epoch seconds) the parent call's, which bounds every child call and retry.
    """

    def __init__(
        self,
        client: Client,
        user: UserContext,
        parent_call_id: str,
        *,
        resiliency: Resiliency | None = None,
        hooks: Hooks | None = None,
        deadline: float | None = None,
    ) -> None:
        if not parent_call_id:
            raise ValueError("a Messaging is bound to a call: give the parent callId")
        self.client = client
        self.user = user
        self.parent_call_id = parent_call_id
        self.resiliency = resiliency if resiliency is not None else Resiliency()
        self.hooks = hooks.copy() if hooks is not None else Hooks()
        self.deadline = deadline
        self._ordinals: dict[str, int] = {}

    @property
    def authorization(self) -> str | None:
        """What child calls carry: the original caller's bearer token, none for an anonymous caller."""
        return f"Bearer {self.user.token}" if self.user.token else None

    def __repr__(self) -> str:
        return f"Messaging(parent_call_id={self.parent_call_id!r}, user={self.user.user_id!r})"

    def add_hook(self, kind: HookKind, hook: Hook) -> None:
        """Run ``hook`` on every outgoing (``before_send``) or incoming (``after_receive``) message of
        this call's messaging."""
        self.hooks.add(kind, hook)

    def next_call_id(self, target: str) -> str:
        """The callId of the next call to ``target`` (the n-th call to it within this run)."""
        n = self._ordinals.get(target, 0) + 1
        self._ordinals[target] = n
        return child_call_id(self.parent_call_id, target, n)

    # ------------------------------------------------------------------ calls

    async def call(
        self,
        target: str,
        input: Any = None,
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """Call ``target`` (``"service.function"``) with ``input`` (a mapping or pydantic model) and
        return its JSON result, or raise its typed error. ``timeout`` bounds each attempt (the
        policy's ``timeout_s`` by default); the parent's deadline bounds the whole, retries included."""
        service, function = _split_target(target)
        call_id = self.next_call_id(target)  # taken before any await: the order of the calls fixes it
        message = HookMessage("call", target, input, _checked_headers(headers), call_id)
        await self.hooks.run("before_send", message)
        sent_headers = _checked_headers(message.headers)

        async def attempt(attempt_timeout: float) -> Any:
            return await self.client.call(
                service,
                function,
                message.body,
                timeout=attempt_timeout,
                call_id=call_id,
                headers=sent_headers,
                authorization=self.authorization,
            )

        try:
            result = await self.resiliency.run(target, attempt, timeout=timeout, budget_s=self._budget())
        except DormantError as exc:
            await self.hooks.run(
                "after_receive",
                HookMessage(
                    "response", target, exc.to_payload(), {wire.PROP_STATUS: wire.STATUS_ERROR}, call_id
                ),
            )
            raise
        await self.hooks.run(
            "after_receive",
            HookMessage("response", target, result, {wire.PROP_STATUS: wire.STATUS_OK}, call_id),
        )
        return result

    send_and_wait = call

    # ------------------------------------------------------------------ fire and forget

    async def send(
        self, topic_or_target: str, body: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> str:
        """Fire and forget; returns the callId or event id.

        ``"service.function"``: a one-way call, published with the caller's token and a child callId
        (de-duplicated like ``call``), retried and breaker-guarded like a call while nothing serves it
        (``Unavailable``); its answer, and any error of the handler, reach nobody. Any other name: an
        event on ``events/{name}`` with the caller's subject (``user-id``), the event id and the
        parent callId (``causation-id``); nobody subscribing is no error.
        """
        if "." in topic_or_target:
            return await self._send_one_way(topic_or_target, body, headers)
        return await self._publish_event(topic_or_target, body, headers)

    async def _send_one_way(self, target: str, body: Any, headers: Mapping[str, str] | None) -> str:
        service, function = _split_target(target)
        call_id = self.next_call_id(target)
        message = HookMessage("send", target, body, _checked_headers(headers), call_id)
        await self.hooks.run("before_send", message)
        payload = wire.encode_request(request_body(message.body))
        topic = wire.function_topic(service, function)
        sent_headers = _checked_headers(message.headers)
        # Its function.invoke span (a PRODUCER: nobody answers) when this process traces.
        traced = _tracing.client_call(service, function, sent_headers, one_way=True)
        with traced if traced is not None else _tracing.NO_TRACE as invocation:
            if invocation is not None:
                invocation.sending(topic, None, call_id)
            props = wire.request_properties(
                deadline=self.deadline,
                authorization=self.authorization,
                extra=_tracing.outgoing(sent_headers, invocation),
            )

            async def attempt(attempt_timeout: float) -> None:
                reason = await self.client.publish(
                    topic,
                    payload,
                    user_properties=props,
                    correlation=call_id.encode(),
                    timeout=attempt_timeout,
                )
                if reason == NO_MATCHING_SUBSCRIBERS:
                    raise Unavailable(f"nothing serves {target} now", {"target": target, "callId": call_id})

            await self.resiliency.run(target, attempt, budget_s=self._budget())
        return call_id

    async def _publish_event(self, name: str, body: Any, headers: Mapping[str, str] | None) -> str:
        topic = wire.event_topic(name)
        event_id = self.next_call_id("event:" + name)
        message = HookMessage("event", name, body, _checked_headers(headers), event_id)
        await self.hooks.run("before_send", message)
        props = [
            *_checked_headers(message.headers).items(),
            *self._identity(),
            (wire.PROP_EVENT_ID, event_id),
        ]
        await self.client.publish(
            topic, orjson.dumps(message.body), user_properties=props, timeout=self._budget()
        )
        return event_id

    def _identity(self) -> list[tuple[str, str]]:
        """The sender's subject (not its token: see the module docstring) and the sending call."""
        props = [(wire.PROP_CAUSATION_ID, self.parent_call_id)]
        if self.user.user_id is not None:
            props.append((wire.PROP_USER_ID, self.user.user_id))
        return props

    # ------------------------------------------------------------------ events in

    async def subscribe(
        self,
        name: str,
        handler: Callable[[Event], Awaitable[None]] | None = None,
        *,
        maxsize: int = EVENT_QUEUE_SIZE,
    ) -> EventSubscription:
        """Subscribe to events named ``name``; subscribed when this returns. Without ``handler``,
        iterate the result (``async for event in sub``) or ``await sub.receive(timeout)``; with one,
        it is called for each event (its exceptions are logged) until ``await sub.close()``."""
        subscription = Subscription(self.client, wire.event_topic(name), maxsize)
        await subscription.open()
        events = EventSubscription(name, subscription, self.hooks)
        if handler is not None:
            events._start(handler)
        return events

    async def receive(self, name: str, timeout: float = DEFAULT_RECEIVE_TIMEOUT_S) -> Event:
        """The first event named ``name`` published after this is called; ``TimeoutError`` if none."""
        async with await self.subscribe(name) as events:
            return await events.receive(timeout)

    # ------------------------------------------------------------------ binary

    async def send_binary(
        self,
        name: str,
        data: bytes,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Send ``data`` in chunks on ``binary/{name}``; returns the transfer id (derived from the
        parent callId, so a re-run sender repeats it). ``Unavailable`` when nobody receives it: a
        transfer nobody reads is lost, unlike an event nobody wants."""
        topic = wire.binary_topic(name)
        transfer_id = self.next_call_id("binary:" + name)
        message = HookMessage("binary", name, data, _checked_headers(headers), transfer_id)
        await self.hooks.run("before_send", message)
        extra = [*_checked_headers(message.headers).items(), *self._identity()]
        budget = timeout if timeout is not None else self._budget()
        for payload, props in binary_chunks(transfer_id, bytes(message.body), chunk_size, extra):
            reason = await self.client.publish(topic, payload, user_properties=props, timeout=budget)
            if reason == NO_MATCHING_SUBSCRIBERS:
                raise Unavailable(f"nobody receives binary transfers named {name}", {"name": name})
        return transfer_id

    async def binary_inbox(self, name: str, *, max_bytes: int = DEFAULT_MAX_TRANSFER_BYTES) -> BinaryInbox:
        """Subscribe to transfers named ``name`` (before the sender starts); close it when done."""
        subscription = Subscription(self.client, wire.binary_topic(name), CHUNK_QUEUE_SIZE)
        await subscription.open()
        return BinaryInbox(name, subscription, self.hooks, max_bytes)

    async def receive_binary(
        self,
        name: str,
        timeout: float = DEFAULT_RECEIVE_TIMEOUT_S,
        *,
        max_bytes: int = DEFAULT_MAX_TRANSFER_BYTES,
    ) -> bytes:
        """The first transfer named ``name`` sent after this is called (see ``BinaryInbox.receive``)."""
        async with await self.binary_inbox(name, max_bytes=max_bytes) as inbox:
            return await inbox.receive(timeout)

    def _budget(self) -> float | None:
        """Seconds left of the parent call's deadline (never negative), or None without one."""
        return None if self.deadline is None else max(0.0, self.deadline - time.time())


def _split_target(target: str) -> tuple[str, str]:
    service, dot, function = target.partition(".")
    if not dot or not is_valid_service_name(service) or not is_valid_function_name(function):
        raise ValidationError(
            f"{target[:100]!r} is not a target: expected 'service.function'", {"target": target[:100]}
        )
    return service, function


def _checked_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """``headers`` as a dict; a reserved name (identity, deadline, status, messaging ids) is refused,
    so neither handler code nor a hook can speak for another user."""
    checked = dict(headers or {})
    forged = sorted(RESERVED_HEADERS.intersection(key.lower() for key in checked))
    if forged:
        raise ValidationError(f"these headers are set by Dormant and cannot be given: {', '.join(forged)}")
    return checked
