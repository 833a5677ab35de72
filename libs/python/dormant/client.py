"""``dormant.Client``: call functions over MQTT 5 and get results or typed errors back.

One client holds one broker connection and one reply inbox (``wire.reply_topic``:
``reply/{username}/{clientId}/#`` when the broker URL names a user, ``reply/{clientId}/#`` when it
connects anonymously); concurrent calls are matched to their responses by Correlation Data (the callId).
Several calls in flight at once with one callId (a careless retry, ``asyncio.gather`` of the same call) all
wait for, and all get, the one answer: the runtime runs such a call once and answers each copy alike. A call
that reuses the callId of one in flight for another function or input (an answer could not be told apart)
is sent only once that call has its answer, then gets its own (``Conflict`` from the runtime for another
input of the same function), or ``TimeoutError`` if its deadline passes first.

Broker identity: the URL's user name and password (percent-decoded) log in; ``mqtts://`` connects over
TLS (``$DORMANT_BROKER_CA_FILE`` and, for mutual TLS, ``$DORMANT_BROKER_CERT_FILE`` /
``$DORMANT_BROKER_KEY_FILE``: see ``dormant.config.parse_broker_url``). A broker that refuses the login
(CONNACK "bad user name or password" or "not authorized", e.g. no credentials on a secured broker)
makes ``connect`` fail at once with ``Unauthenticated``; one that cannot be reached, with ``Unavailable``.
The password is never in an error or a log line (``dormant.config.redact_url``).

One connection per session: a secured broker's callers' listener uses the user name as the client id,
so a second client of the same caller account takes the first one's session over (the same happens
anywhere two clients share a client id). The newer connection wins: the client that was taken over
does not reconnect (two clients would take the session from each other for ever), fails its waiting
calls and every later one with ``Unavailable``, and must be replaced by a new ``Client`` if it is
still wanted. It knows it was taken over from the broker's DISCONNECT "session taken over" or, from
brokers that close the connection without a word, from the pattern of its losses
(``dormant.transport.TakeoverWatch``).
Run one client per caller account at a time (components use their own listener, where each
picks its client id).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import enum
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from . import _tracing, wire
from ._modeljson import request_body
from .callid import CallId
from .config import Settings, redact_url
from .decorators import is_valid_function_name, is_valid_service_name
from .errors import DormantError, Forbidden, TimeoutError, Unauthenticated, Unavailable, ValidationError
from .mqtt.codec import topic_name_problem
from .routing import LIVE_ALIAS, RouteTable, ServiceStates, explain_unserved
from .transport import (
    NO_MATCHING_SUBSCRIBERS,
    NOT_AUTHORIZED,
    Message,
    TakeoverWatch,
    Transport,
    TransportError,
    new_transport,
)

if TYPE_CHECKING:
    from ._spans import Invocation

DEFAULT_TIMEOUT_S = 30.0
FIRST_RETRY_S = 1.0
MAX_RETRY_INTERVAL_S = 8.0
SESSION_EXPIRY_S = 60
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0
REFUSED_LOGIN = (0x86, 0x87)
"""CONNACK reason codes of a refused login: bad user name or password, not authorized."""
RESUBSCRIBE_GRACE_S = 8.0
"""After the client (re)connects, "no subscribers" may only mean that runtimes are reconnecting too
(a broker restart): for this long it is retried instead of failing fast. Runtimes retry their connection
up to RECONNECT_MAX_S (2 s) apart and then resubscribe, on a machine that may be busy: 3 s proved too
short in a broker restart under load (Unavailable for calls a runtime answered moments later); a call
is bounded by its deadline all the same, and only a call in the first seconds after a reconnect waits."""

SWITCH_WAIT_S = 10.0
"""How long a call keeps trying a service whose state says it is serving while nothing subscribes to
the call's topic: a version switch under way (the old runtime drained, the route table not yet moved,
or the new runtime still subscribing), which settles in about a second on a quiet machine."""

WAKE_WAIT_S = 3.0
"""How long a call waits for a controller to scale a service at 0 replicas up before it gives up."""
WAKE_RESEND_S = 1.0
WAKE_POLL_MIN_S = 0.01
WAKE_POLL_MAX_S = 0.1
"""Pauses between the publishes of a call waiting for a woken service (doubling from min to max)."""

Reply = tuple[bytes, tuple[tuple[str, str], ...]]
Listener = Callable[[Message], None]
"""Takes a message received on a ``listen``ed topic; runs in the connection's reader, so it must not block."""


class _Waiters:
    """The calls waiting for the answer with one Correlation Data: what they send (``identity``: service,
    function, payload, authorization; None for the client's own barrier messages) and their futures."""

    __slots__ = ("futures", "identity", "idle")

    def __init__(self, identity: tuple[str, str, bytes, str | None] | None) -> None:
        self.identity = identity
        self.futures: set[asyncio.Future[Reply]] = set()
        self.idle = asyncio.Event()
        """Set once the last of them left: a call with another identity may take the callId then."""

    def answer(self, reply: Reply) -> None:
        for future in self.futures:
            if not future.done():
                future.set_result(reply)

    def fail(self, error: DormantError) -> None:
        for future in self.futures:
            if not future.done():
                future.set_exception(_copy(error))


class _Default(enum.Enum):
    CLIENT = "the client's own"


CLIENT_AUTHORIZATION = _Default.CLIENT
"""``Client.call(authorization=...)`` default: the client's ``authorization`` attribute."""


class Client:
    """An async caller of Dormant functions.

    >>> async with Client("mqtt://127.0.0.1:1883") as client:
    ...     user = await client.call("user-service", "createUser", {"email": "a@b.io", "name": "Ann"})
    """

    def __init__(
        self,
        broker_url: str | None = None,
        *,
        client_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        authorization: str | None = None,
        first_retry: float = FIRST_RETRY_S,
        max_retry_interval: float = MAX_RETRY_INTERVAL_S,
    ) -> None:
        settings = Settings.from_env(broker_url=broker_url)
        self.broker_url = settings.broker_url
        self.username = settings.broker.username
        """The broker user name the URL logs in as (None: anonymous); it names the inbox."""
        self.client_id = client_id or f"dormant-client-{uuid.uuid4().hex[:16]}"
        self.default_timeout = timeout
        if authorization is None and settings.token:
            authorization = f"Bearer {settings.token}"
        self.authorization = authorization or None
        """Sent with every call (the ``authorization`` user property): the given value, else
        ``Bearer $DORMANT_TOKEN`` (or the dev mesh's developer token); ``""`` sends none."""
        self.first_retry = first_retry
        self.max_retry_interval = max_retry_interval
        self.retries = 0
        """Publishes repeated because an answer was late (for tests and metrics)."""
        self._inbox = wire.reply_topic(self.client_id, self.username)
        self._pending: dict[bytes, _Waiters] = {}
        """The calls waiting for an answer, by Correlation Data (several for a callId sent concurrently)."""
        self._transport: Transport | None = None
        self._connected = asyncio.Event()
        self._reconnected_at: float | None = None
        self._closing = False
        self._ended: DormantError | None = None
        """Why this client stopped for good (its session was taken over); every call raises it."""
        self._connection: asyncio.Task[None] | None = None
        self._listeners: dict[str, list[Listener]] = {}
        self._subscribed: dict[str, asyncio.Event] = {}
        self.routes = RouteTable()
        """Route tables (``mesh/routes/{svc}``) of the services called without a version."""
        self.states = ServiceStates()
        """Service states (``mesh/services/{svc}``) of the services a call of which reached nobody."""

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect; later it reconnects on its own. ``Unavailable`` if the broker cannot be reached now,
        ``Unauthenticated`` if it refuses the URL's credentials (or their absence), ``Forbidden`` if it
        refuses the inbox subscription (a user name whose account may not read ``reply/{username}/#``)."""
        first: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connection = asyncio.create_task(self._stay_connected(first), name=f"dormant-{self.client_id}")
        await first

    async def close(self) -> None:
        self._closing = True
        if self._connection is not None:
            self._connection.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._connection
            self._connection = None
        if self._transport is not None:
            await self._transport.close(end_session=True)
            self._transport = None
        for waiters in self._pending.values():
            waiters.fail(Unavailable("the client was closed"))
            waiters.idle.set()  # calls waiting for their turn find the client closed
        self._pending.clear()

    async def _stay_connected(self, first: asyncio.Future[None]) -> None:
        delay = RECONNECT_MIN_S
        takeover = TakeoverWatch()
        while not self._closing:
            transport = new_transport(
                self.broker_url,
                client_id=self.client_id,
                clean_start=False,
                session_expiry_s=SESSION_EXPIRY_S,
            )
            logged_in = False
            try:
                await transport.connect()
                logged_in = True
                await transport.subscribe([wire.reply_filter(self.client_id, self.username)], qos=1)
                if self.routes.watched:
                    await transport.subscribe([RouteTable.filter_for(s) for s in self.routes.watched], qos=1)
                if self.states.watched:
                    filters = {f for s in self.states.watched for f in ServiceStates.filters_for(s)}
                    await transport.subscribe(sorted(filters), qos=1)
                if self._listeners:
                    await transport.subscribe(sorted(self._listeners), qos=1)
            except TransportError as exc:
                await transport.close()
                if not first.done():
                    first.set_exception(self._connect_error(exc, logged_in=logged_in))
                    return
                takeover.unreachable()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_MIN_S
            self._transport = transport
            takeover.connected()
            if first.done():
                self._reconnected_at = time.monotonic()
            self._connected.set()
            if not first.done():
                first.set_result(None)
            lost: TransportError | None = None
            try:
                async for message in transport.messages():
                    listeners = self._listeners.get(message.topic)
                    if listeners:
                        for listener in list(listeners):
                            listener(message)
                        continue
                    if message.correlation is None:
                        if not self.routes.feed(message.topic, message.payload):
                            self.states.feed(message.topic, message.payload)
                        continue
                    waiters = self._pending.get(message.correlation)
                    if waiters is not None:
                        waiters.answer((message.payload, tuple(message.user_properties)))
            except TransportError as exc:
                lost = exc
            self._connected.clear()
            self._transport = None
            await transport.close()
            if lost is None:
                continue
            evidence = takeover.lost(lost.reason)
            if evidence is not None:
                # Reconnecting would take the session back, and the other client would do the same.
                self._end(self._taken_over(evidence, lost.reason))
                return

    def _taken_over(self, evidence: str, reason: int | None) -> Unavailable:
        details: dict[str, Any] = {"broker": redact_url(self.broker_url)}
        if reason is not None:
            details["reasonCode"] = reason
        return Unavailable(
            "another connection with this client's id took its broker session over (on a secured "
            "broker's callers' listener: another client of the same account); this client no longer "
            f"connects ({evidence})",
            details,
        )

    def _connect_error(self, exc: TransportError, *, logged_in: bool) -> DormantError:
        """The typed error of a first connection attempt that failed with ``exc``: a refused login is
        ``Unauthenticated``, a refused inbox subscription ``Forbidden``, anything else ``Unavailable``."""
        details: dict[str, Any] = {"broker": redact_url(self.broker_url)}
        if exc.reason is not None:
            details["reasonCode"] = exc.reason
        if not logged_in and exc.reason in REFUSED_LOGIN:
            who = f"the broker user {self.username!r}" if self.username else "an anonymous client"
            return Unauthenticated(f"the broker refused {who}: {exc}", details)
        if logged_in and exc.reason == NOT_AUTHORIZED:
            return Forbidden(f"the broker refused this client's subscriptions: {exc}", details)
        return Unavailable(str(exc), details)

    def _end(self, error: DormantError) -> None:
        """Stop for good: fail every waiting call with ``error``, and every later one."""
        self._ended = error
        for waiters in self._pending.values():
            waiters.fail(error)
        # Wakes whoever waits for the connection; they find ``_ended`` set (``_live_transport``).
        self._connected.set()

    @property
    def connected(self) -> bool:
        """Whether the client has a broker connection now (while it has none, it reconnects on its own)."""
        return self._transport is not None and self._ended is None

    def _live_transport(self) -> Transport | None:
        """The current connection (None while it is down); raises why the client ended, if it did."""
        if self._ended is not None:
            raise _copy(self._ended)
        return self._transport

    async def call(
        self,
        service: str,
        function: str,
        params: Any = None,
        *,
        timeout: float | None = None,
        version: int | None = None,
        call_id: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        routing_key: str | None = None,
        authorization: str | _Default | None = CLIENT_AUTHORIZATION,
    ) -> Any:
        """Call ``service.function`` and return its JSON result, or raise the typed error.

        ``params`` is a mapping or a pydantic model (other JSON values are sent as they are and
        answered with ``ValidationError``). ``call_id`` reuses a callId (an idempotency key): a call
        that already ran returns its stored answer without running again. Without ``version`` the
        version is picked by the service's published route weights (``routing_key`` makes the pick
        sticky); with no route table the call goes to ``service/{svc}/{fn}`` (the live version).
        ``authorization`` replaces the client's ``authorization`` for this call (None: send none), as a
        handler's calls on behalf of its caller do.
        """
        if self._connection is None:
            raise RuntimeError("use `async with Client(...)` or await client.connect() first")
        # A name no service or function can have is refused here, before any topic is built from it.
        if not is_valid_service_name(service):
            raise ValidationError(f"{service[:100]!r} is not a service name", {"service": service[:100]})
        if not is_valid_function_name(function):
            raise ValidationError(f"{function[:100]!r} is not a function name", {"function": function[:100]})
        timeout = self.default_timeout if timeout is None else timeout
        correlation = _correlation(call_id)
        args = (service, function, params, timeout, version, correlation, headers, routing_key, authorization)
        traced = _tracing.client_call(service, function, headers)
        if traced is None:
            return await self._call(*args)
        with traced as invocation:
            return await self._call(*args, invocation)

    async def _call(
        self,
        service: str,
        function: str,
        params: Any,
        timeout: float,
        version: int | None,
        correlation: bytes,
        headers: Mapping[str, str] | None,
        routing_key: str | None,
        authorization: str | _Default | None,
        invocation: Invocation | None = None,
    ) -> Any:
        """``call`` once its arguments are checked; ``invocation`` is its span when this process traces."""
        if version is None:
            version = await self.route(service, routing_key=routing_key)
        topic = (
            wire.version_topic(service, version, function)
            if version is not None
            else wire.function_topic(service, function)
        )
        payload = wire.encode_request(request_body(params))
        deadline = time.time() + timeout
        if invocation is not None:
            invocation.sending(topic, version, CallId(correlation).text)
        props = wire.request_properties(
            deadline=deadline,
            authorization=self.authorization if authorization is CLIENT_AUTHORIZATION else authorization,
            extra=_tracing.outgoing(headers, invocation),
        )
        sent_authorization = self.authorization if authorization is CLIENT_AUTHORIZATION else authorization
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        await self._wait_turn(
            correlation, (service, function, payload, sent_authorization), future, deadline, timeout
        )
        wait = self.first_retry
        attempts = 0
        delivered = False
        waking = _Wake(self)
        try:
            while True:
                remaining = deadline - time.time()
                if remaining <= 0:
                    raise TimeoutError(
                        f"no response from {service}.{function} within {timeout:g}s",
                        {"callId": CallId(correlation).text, "timeout": timeout, "attempts": attempts},
                    )
                reason = await self._publish(topic, payload, correlation, props, remaining)
                if reason is None:
                    continue  # the connection is down: wait for it to come back, then publish again
                attempts += 1
                self.retries += attempts > 1
                if reason == NOT_AUTHORIZED:
                    raise Forbidden(f"the broker refused a call to {service}.{function}")
                if reason >= 0x80:
                    # Refused for what the request is (a topic or string the broker cannot take, a
                    # packet too large) or for the broker's state: sending it again cannot help.
                    raise _refusal(reason, service, function)
                if reason == NO_MATCHING_SUBSCRIBERS:
                    if self._just_reconnected():
                        await asyncio.sleep(min(0.1, max(0.0, deadline - time.time())))
                        continue
                    if not delivered:
                        error = await self._unserved(service, function, version, topic, correlation)
                        if not await waking.still_waiting(service, error):
                            raise error
                        if invocation is not None:
                            invocation.waiting(waking.reason)
                        await asyncio.sleep(min(waking.pause(), max(0.0, deadline - time.time())))
                        continue
                    # An earlier attempt reached a runtime that is now draining: its answer may still come.
                else:
                    delivered = True
                    if invocation is not None:
                        invocation.delivered()
                try:
                    budget = min(wait, max(0.0, deadline - time.time()))
                    reply = await asyncio.wait_for(asyncio.shield(future), budget)
                except builtins.TimeoutError:
                    wait = min(wait * 2, self.max_retry_interval)
                    continue
                return wire.decode_response(*reply)
        finally:
            self._leave(correlation, future)
            if not future.done():
                future.cancel()
            if invocation is not None:
                invocation.attempts(attempts)

    async def _wait_turn(
        self,
        correlation: bytes,
        identity: tuple[str, str, bytes, str | None],
        future: asyncio.Future[Reply],
        deadline: float,
        timeout: float,
    ) -> None:
        """Add ``future`` to the waiters for ``correlation``: at once when none wait or they send the same
        call (they share its answer), else once they all left (their answer would not be this call's).
        ``TimeoutError`` when the deadline passes first."""
        while True:
            if self._closing:
                raise Unavailable("the client was closed")
            waiters = self._pending.get(correlation)
            if waiters is None:
                waiters = self._pending[correlation] = _Waiters(identity)
            if waiters.identity == identity:
                waiters.futures.add(future)
                return
            remaining = deadline - time.time()
            try:
                if remaining <= 0:
                    raise builtins.TimeoutError
                await asyncio.wait_for(waiters.idle.wait(), remaining)
            except builtins.TimeoutError:
                raise TimeoutError(
                    f"no response from {identity[0]}.{identity[1]} within {timeout:g}s: another call with "
                    "this callId (another function or input) was in flight on this client all along",
                    {"callId": CallId(correlation).text, "timeout": timeout, "attempts": 0},
                ) from None

    def _leave(self, correlation: bytes, future: asyncio.Future[Reply]) -> None:
        """Take ``future`` off the waiters for ``correlation``; the last one out frees the callId."""
        waiters = self._pending.get(correlation)
        if waiters is None:
            return
        waiters.futures.discard(future)
        if not waiters.futures:
            del self._pending[correlation]
            waiters.idle.set()

    async def publish(
        self,
        topic: str,
        payload: bytes,
        *,
        user_properties: Sequence[tuple[str, str]] = (),
        correlation: bytes | None = None,
        timeout: float | None = None,
    ) -> int:
        """Publish one message with QoS 1 that nobody answers (an event, a chunk, a one-way call).

        Waits up to ``timeout`` (the client's default) for the broker to confirm it, across
        reconnects; ``Unavailable`` when it cannot. Returns the PUBACK reason code: 0, or
        ``NO_MATCHING_SUBSCRIBERS`` when nobody subscribes to ``topic`` (yours to judge: for an event
        that is normal). A topic that is not a plain topic name is ``ValidationError``; a publish the
        broker refuses is ``Forbidden`` (not authorized) or the refusal's typed error.
        """
        if self._connection is None:
            raise RuntimeError("use `async with Client(...)` or await client.connect() first")
        problem = topic_name_problem(topic)
        if problem is not None:
            raise ValidationError(f"cannot publish to {topic[:100]!r}: the topic {problem}")
        budget = self.default_timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        message = Message(topic, payload, qos=1, correlation=correlation, user_properties=user_properties)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Unavailable(
                    f"the broker did not take a message for {topic[:100]} within {budget:g}s",
                    {"broker": redact_url(self.broker_url)},
                )
            self._live_transport()
            try:
                await asyncio.wait_for(self._connected.wait(), remaining)
            except builtins.TimeoutError:
                continue
            transport = self._live_transport()
            if transport is None:
                await asyncio.sleep(min(RECONNECT_MIN_S, remaining))
                continue
            try:
                reason = await asyncio.wait_for(transport.publish(message), remaining)
            except builtins.TimeoutError:
                continue
            except TransportError as exc:
                if exc.reason is None or exc.reason < 0x80:
                    # The connection dropped before the broker confirmed it: send it again (QoS 1 is
                    # at least once anyway; receivers de-duplicate by the ids in the properties).
                    await asyncio.sleep(min(RECONNECT_MIN_S, remaining))
                    continue
                reason = exc.reason
            if reason == NOT_AUTHORIZED:
                raise Forbidden(f"the broker refused a message to {topic[:100]}")
            if reason >= 0x80:
                raise _refused(reason, f"a message to {topic[:100]}")
            return reason

    async def listen(self, topic: str, listener: Listener, *, timeout: float | None = None) -> None:
        """Hand every message on ``topic`` (a plain topic name, no wildcards) to ``listener`` until
        ``unlisten``; subscribed (and again after every reconnect) before this returns.
        ``Unavailable`` when the broker cannot be reached within ``timeout``."""
        if self._connection is None:
            raise RuntimeError("use `async with Client(...)` or await client.connect() first")
        problem = topic_name_problem(topic)
        if problem is not None:
            raise ValidationError(f"cannot listen to {topic[:100]!r}: the topic {problem}")
        listeners = self._listeners.setdefault(topic, [])
        listeners.append(listener)
        budget = self.default_timeout if timeout is None else timeout
        subscribed = self._subscribed.get(topic)
        try:
            if subscribed is None:
                subscribed = self._subscribed[topic] = asyncio.Event()
                try:
                    await asyncio.wait_for(self._connected.wait(), budget)
                    transport = self._live_transport()
                    if transport is not None:
                        # A connection lost meanwhile is fine: the reconnect subscribes to every
                        # listened topic.
                        with contextlib.suppress(TransportError):
                            await transport.subscribe([topic], qos=1)
                    subscribed.set()
                finally:
                    if not subscribed.is_set() and self._subscribed.get(topic) is subscribed:
                        del self._subscribed[topic]  # the next listener subscribes again
            else:
                await asyncio.wait_for(subscribed.wait(), budget)  # another listener's SUBACK
        except builtins.TimeoutError:
            await self.unlisten(topic, listener)
            raise Unavailable(f"no broker connection to subscribe to {topic[:100]}") from None

    async def unlisten(self, topic: str, listener: Listener) -> None:
        """Stop handing ``topic``'s messages to ``listener``; unsubscribe after the last listener."""
        listeners = self._listeners.get(topic, [])
        if listener in listeners:
            listeners.remove(listener)
        if listeners or topic not in self._listeners:
            return
        del self._listeners[topic]
        self._subscribed.pop(topic, None)
        transport = self._transport
        if transport is not None:
            with contextlib.suppress(TransportError):
                await transport.unsubscribe([topic])

    async def route(
        self, service: str, *, alias: str = LIVE_ALIAS, routing_key: str | None = None
    ) -> int | None:
        """The version a call through ``alias`` goes to: a pick from the published route table
        (subscribed to and waited for on first use); None when the table has no such alias."""
        with _tracing.route(service, alias, routing_key is not None) as span:
            await self._watch(self.routes.watched, service, [RouteTable.filter_for(service)], "routes")
            version = self.routes.choose(service, routing_key, alias)
            if span is not None:
                span.picked(version)
            return version

    async def _unserved(
        self, service: str, function: str, version: int | None, topic: str, correlation: bytes
    ) -> DormantError:
        """Why a call to ``topic`` reached nobody, from the service's retained state (read on first use)."""
        await self._watch(self.states.watched, service, ServiceStates.filters_for(service), "states")
        error = explain_unserved(
            service,
            function,
            version,
            self.states.get(service),
            published=self.states.published,
            topic=topic,
        )
        if isinstance(error.details, dict):
            error.details["callId"] = CallId(correlation).text
        return error

    async def _watch(
        self, watched: dict[str, asyncio.Event], service: str, filters: list[str], tag: str
    ) -> None:
        """Subscribe to ``filters`` once per ``service`` and wait until their retained messages are in."""
        transport = self._transport
        loaded = watched.get(service)
        if loaded is None and transport is not None:
            loaded = watched[service] = asyncio.Event()
            barrier = CallId.new().data
            arrived: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
            self._pending[barrier] = _Waiters(None)
            self._pending[barrier].futures.add(arrived)
            try:
                await transport.subscribe(filters, qos=1)
                # The broker sends retained messages right after the SUBACK, so once our own message
                # published after it comes back, they (if there are any) have arrived.
                await transport.publish(Message(f"{self._inbox}/{tag}", b"", qos=1, correlation=barrier))
                await asyncio.wait_for(arrived, 2.0)
            except (TransportError, builtins.TimeoutError):
                pass
            finally:
                self._leave(barrier, arrived)
                loaded.set()
        elif loaded is not None:
            await loaded.wait()

    def _just_reconnected(self) -> bool:
        return (
            self._reconnected_at is not None and time.monotonic() - self._reconnected_at < RESUBSCRIBE_GRACE_S
        )

    async def _publish(
        self, topic: str, payload: bytes, correlation: bytes, props: list[tuple[str, str]], remaining: float
    ) -> int | None:
        """Publish once and return the PUBACK reason code; None when the connection is down."""
        self._live_transport()
        try:
            await asyncio.wait_for(self._connected.wait(), remaining)
        except builtins.TimeoutError:
            return None
        transport = self._live_transport()
        if transport is None:
            return None
        try:
            # Within the call's deadline: on a connection whose broker went silent (a network
            # partition) the PUBACK never comes, until the keep-alive gives the connection up.
            return await asyncio.wait_for(
                transport.publish(
                    Message(
                        topic,
                        payload,
                        qos=1,
                        response_topic=self._inbox,
                        correlation=correlation,
                        user_properties=props,
                        expiry_s=max(1, round(remaining)),
                    )
                ),
                remaining,
            )
        except builtins.TimeoutError:
            return None  # the deadline has passed: the caller's loop says so
        except TransportError as exc:
            if exc.reason is not None and exc.reason >= 0x80:
                return exc.reason
            await asyncio.sleep(min(RECONNECT_MIN_S, remaining))
            return None


class _Wake:
    """One call's wake protocol, for a service scaled to zero (see ``docs/configuration.md#scaling``).

    When a call reaches nobody and the service's state is ``stopped`` (0 replicas), the caller
    publishes ``mesh/wake/{svc}``; the controller's autoscaler scales an autoscaled service to
    max(1, minInstances) at once. The call is then published again, with short pauses, until a runtime
    takes it or the call's deadline passes: while the state is ``stopped`` (the controller has not
    acted yet; the wake is repeated every ``WAKE_RESEND_S``), ``starting`` (a pooled pod is loading the
    version) or ``serving`` (its runtime is subscribing). A wake nobody receives (PUBACK 0x10: no
    controller) or a service still ``stopped`` ``WAKE_WAIT_S`` after the first wake (not autoscaled, or
    scaled to 0 by hand) ends the call with the ``Unavailable`` it would have had at once.

    It also carries a call over a version switch: a service whose state says ``serving`` while nothing
    subscribes to the call's topic is between two runtimes; the call is published again, with the same
    pauses, for up to ``SWITCH_WAIT_S``.
    """

    def __init__(self, client: Client) -> None:
        self._client = client
        self._first: float | None = None
        self._sent = 0.0
        self._pause = WAKE_POLL_MIN_S
        self._switching: float | None = None

    async def still_waiting(self, service: str, error: DormantError) -> bool:
        """True when the call should be published again (a wake is under way); False: raise ``error``."""
        if not isinstance(error, Unavailable) or not isinstance(error.details, dict):
            return False
        state = self._client.states.get(service)
        stopped = state is not None and state.state == "stopped"
        now = time.monotonic()
        if error.details.get("state") == "serving" and self._first is None:
            # Serving, yet nobody took the call: a version switch under way. It settles by itself.
            self._switching = now if self._switching is None else self._switching
            return now - self._switching <= SWITCH_WAIT_S
        if not stopped:
            # The service came up (or was never asleep): wait only for what a wake started.
            return self._first is not None and error.details.get("state") in ("starting", "serving")
        if self._first is not None and now - self._first > WAKE_WAIT_S:
            error.details["wake"] = f"requested, but {service} was not scaled up within {WAKE_WAIT_S:g}s"
            return False
        if self._first is None or now - self._sent >= WAKE_RESEND_S:
            if not await self._send(service):
                error.details["wake"] = "no controller receives wake requests"
                return False
            self._sent = now
            self._first = self._first if self._first is not None else now
        return True

    async def _send(self, service: str) -> bool:
        """Publish a wake request; False when nobody (no controller) may or does receive it."""
        transport = self._client._live_transport()
        if transport is None:
            return True  # the connection is down: the call's loop waits for it, then asks again
        try:
            reason = await transport.publish(Message(wire.wake_topic(service), b"", qos=1))
        except TransportError as exc:
            return exc.reason is None
        return reason < 0x80 and reason != NO_MATCHING_SUBSCRIBERS

    def pause(self) -> float:
        pause, self._pause = self._pause, min(self._pause * 2, WAKE_POLL_MAX_S)
        return pause

    @property
    def reason(self) -> str:
        """What the call waits for (``dormant.coldstart.reason``): ``wake`` (a service scaled to zero,
        woken by this call) or ``switch`` (a version switch under way)."""
        return "wake" if self._first is not None else "switch"


_REFUSED_REQUESTS = {
    0x81: "the request has a header the broker cannot carry (malformed packet)",
    0x90: "the service or function name does not make a valid topic",
    0x95: "the request is larger than the broker accepts",
    0x99: "the request's payload format is refused",
}


def _refusal(reason: int, service: str, function: str) -> DormantError:
    """The typed error of a call's PUBLISH the broker (or the client, before sending) refused."""
    return _refused(reason, f"a call to {service[:100]}.{function[:100]}")


def _refused(reason: int, what: str) -> DormantError:
    """The typed error of a PUBLISH of ``what`` refused with ``reason``."""
    if reason in _REFUSED_REQUESTS:
        return ValidationError(f"cannot send {what}: {_REFUSED_REQUESTS[reason]}", {"reasonCode": reason})
    return Unavailable(f"the broker refused {what} (reason code 0x{reason:02x})", {"reasonCode": reason})


def _copy(error: DormantError) -> DormantError:
    """A new instance of ``error`` (each raise its own traceback)."""
    return type(error)(
        error.message, dict(error.details) if isinstance(error.details, dict) else error.details
    )


def _correlation(call_id: CallId | bytes | str | None) -> bytes:
    return CallId.of(call_id).data
