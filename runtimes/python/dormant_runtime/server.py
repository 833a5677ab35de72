"""Serving one loaded service over MQTT: subscribe, decode, de-duplicate, dispatch, reply, ack, drain.

A ``Server`` owns the broker connection of a runtime process. It uses a persistent session under a
stable client id (per service, version and replica slot), so a runtime restarted in the same slot
gets back the requests its predecessor had not acknowledged. A request is acknowledged only after
its response has been published and the broker has confirmed it. The server reconnects and
resubscribes after a lost connection, except when another runtime took its session over (then this
one has been replaced and waits to be drained). It bounds the calls in flight, and on ``drain()``
stops taking calls (it unsubscribes, so the broker hands them to the other members of the shared
group), finishes the calls it holds, then disconnects and ends its session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any, Literal

import orjson

from dormant import _tracing, errors, wire
from dormant.context import UserContext
from dormant.transport import Message, TakeoverWatch, Transport, TransportError, new_transport
from dormant_catalog import CatalogUnavailable
from dormant_catalog.calls import MAX_CALL_ID_BYTES, CallState, Claim, call_id_problem, fingerprint
from dormant_catalog.db import is_transient

from .audit import CallAudit
from .authn import CallAuthenticator
from .datastore import leave_caller_role
from .dedup import STORED_ERROR_TYPES, Deduplicator
from .dispatcher import Dispatcher, Outcome
from .limits import EXIT_OUT_OF_MEMORY, peak_rss_mb
from .live_config import FIRST_REVISION_WAIT_S, parse_revision
from .stats import CallStats, mark_start
from .transactions import is_broken

log = logging.getLogger("dormant.runtime")

DEFAULT_MAX_IN_FLIGHT = 256
SESSION_EXPIRY_S = 120
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0
QUEUE_SETTLE_S = 0.1
PERMANENT_PUBLISH_FAILURES = frozenset({0x81, 0x87, 0x90})
"""PUBLISH reason codes no retry can change: malformed packet, not authorized, topic name invalid."""
STORE_OUTAGE_S = 30.0
"""How long a call waits for an unreachable call de-duplication store (bounded by its deadline)."""
STORE_RETRY_MIN_S = 0.05
STORE_RETRY_MAX_S = 1.0
MAX_RUNS_PER_DELIVERY = 3
"""Runs of one delivered request whose commit the database cut off, before it is answered Unavailable."""


class Server:
    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        broker_url: str,
        version: int,
        live: bool = True,
        client_id: str,
        dedup: Deduplicator | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        stats: CallStats | None = None,
        authenticator: CallAuthenticator | None = None,
        concurrency_limit: int | None = None,
        audit: CallAudit | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.audit = audit
        """Where executions, refusals and security events go (``dormant_runtime.audit``); None: nowhere."""
        self._callers: dict[str, str | None] = {}
        """The subject of each admitted call being handled, by callId (for its execution entry)."""
        self.concurrency_limit = concurrency_limit
        """Calls run at once before the next is answered ``Throttled`` (the function's share on this
        replica of its ``maxConcurrency``); None: only ``max_in_flight`` bounds them, by waiting."""
        self._running: set[str] = set()
        """The callIds of the calls running here (what the concurrency limit counts)."""
        self.authenticator = authenticator or CallAuthenticator(dispatcher.service.auth, None)
        self.broker_url = broker_url
        self.service = dispatcher.service.name
        self.version = version
        self.live = live
        self.client_id = client_id
        self.dedup = dedup
        self.stats = stats
        self.filters = wire.serving_filters(self.service, version, live=live)
        self.config_topic = wire.config_topic(self.service)
        self._config_marker = wire.config_topic()
        self.config_revision: int | None = None
        """The live configuration revision handlers see (None before the first arrived)."""
        self._config_arrived = asyncio.Event()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: Transport | None = None
        self._ready = asyncio.Event()
        self._draining = False
        self._drain_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.replaced = False
        """True once another runtime took this one's session over."""
        self._served = False
        """A call has been handled here (the first one is the cold start, ``faas.coldstart``)."""

    async def wait_ready(self) -> None:
        """Return once the first subscription is in place."""
        await self._ready.wait()

    @property
    def connected(self) -> bool:
        """Whether this runtime has a broker connection now (for its sidecar's readiness check)."""
        return self._transport is not None and not self.replaced

    @property
    def in_flight(self) -> int:
        """Requests being handled now (received, not yet answered and acknowledged)."""
        return len(self._tasks)

    async def run(self) -> None:
        """Serve until drained."""
        delay = RECONNECT_MIN_S
        takeover = TakeoverWatch()
        while not self._draining:
            transport = new_transport(
                self.broker_url,
                client_id=self.client_id,
                clean_start=False,
                session_expiry_s=SESSION_EXPIRY_S,
                manual_ack=True,
            )
            try:
                await transport.connect()
                # The live configuration first: its retained revision is in place before a call. The
                # broker sends retained messages in the order of the filters, so the controller's
                # marker, after the service's own topic, says no revision is retained for it.
                await transport.subscribe([self.config_topic, wire.config_topic()], qos=1)
                self._reader = asyncio.create_task(self._read(transport, takeover))
                if not self._config_arrived.is_set():
                    await self._first_config()
                await transport.subscribe(self.filters, qos=1)
            except TransportError as exc:
                log.warning("broker unreachable (%s); retrying in %.2fs", exc, delay)
                if self._reader is not None:
                    self._reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._reader
                await transport.close()
                takeover.unreachable()
                await self._sleep_unless_draining(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_MIN_S
            self._transport = transport
            takeover.connected()
            self._ready.set()
            log.info("serving %s v%d on %s", self.service, self.version, ", ".join(self.filters))
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            if self.replaced:
                log.warning("another runtime took this session over; waiting to be drained")
                await self._drain_requested.wait()
            elif not self._draining:
                log.warning("lost the broker connection; reconnecting")
                await transport.close()
                self._transport = None
        self._stopped.set()

    async def _first_config(self) -> None:
        try:
            await asyncio.wait_for(self._config_arrived.wait(), FIRST_REVISION_WAIT_S)
        except TimeoutError:
            self._config_arrived.set()  # wait once only: no controller has published on this broker
            log.info("no live configuration for %s is published; serving without one", self.service)

    def _apply_config(self, message: Message) -> None:
        """A ``mesh/config/{svc}`` message: the next calls see its revision (applied in arrival order,
        before any call that arrives after it)."""
        message.ack()
        arrived = parse_revision(message.payload)
        if arrived is not None and arrived.revision != self.config_revision:
            self.dispatcher.config = arrived.values
            self.config_revision = arrived.revision
            log.info("live configuration of %s: revision %d", self.service, arrived.revision)
        self._config_arrived.set()

    async def _read(self, transport: Transport, takeover: TakeoverWatch) -> None:
        try:
            async for message in transport.messages():
                if message.topic == self.config_topic:
                    self._apply_config(message)
                    continue
                if message.topic == self._config_marker:
                    message.ack()
                    self._config_arrived.set()
                    continue
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(transport, message))
                self._tasks.add(task)
                task.add_done_callback(self._done)
        except TransportError as exc:
            evidence = takeover.lost(exc.reason)
            if evidence is not None:
                # Reconnecting would take the session back from the runtime that has it, for ever.
                self.replaced = True
                log.warning("another connection took this runtime's session over: %s", evidence)
                if self.audit is not None:
                    self.audit.security("session-taken-over", None, {"evidence": str(evidence)})
            log.warning("%s", exc)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle(self, transport: Transport, message: Message) -> None:
        mark_start()
        try:
            await self._handle_message(transport, message)
        except Exception:
            # A bug in answering must not leave the request to be redelivered forever.
            log.exception("answering a request on %s failed", message.topic)
            message.ack()
        if self.dispatcher.out_of_memory:
            # The call that went past the memory limit has its answer; the process may be in any
            # state now, so it ends at once, and the calls still in flight (unacknowledged) are
            # delivered again, to the runtime the pod starts in its place.
            log.error("a call went past the memory limit; this runtime ends (peak RSS %s MB)", peak_rss_mb())
            logging.shutdown()
            os._exit(EXIT_OUT_OF_MEMORY)

    async def _handle_message(self, transport: Transport, message: Message) -> None:
        try:
            call = wire.decode_call(
                message.topic,
                message.payload,
                response_topic=message.response_topic,
                correlation=message.correlation,
                user_properties=message.user_properties,
                expiry_s=message.expiry_s,
            )
        except wire.CallRejected as rejected:
            call = rejected.call
            log.info("[%s] rejected call on %s: %s", call.call_id, message.topic, rejected.error)
            with _tracing.execute(call, message.topic, version=self.version):
                await self._answer(transport, message, call, False, orjson.dumps(rejected.error.to_payload()))
            return
        coldstart, self._served = not self._served, True
        # function.execute: a child of the caller's function.invoke (the request's traceparent).
        with _tracing.execute(call, message.topic, version=self.version, coldstart=coldstart):
            await self._handle_call(transport, message, call)

    async def _handle_call(self, transport: Transport, message: Message, call: wire.Call) -> None:
        try:
            # Before anything is looked up or stored: an answer kept for a callId goes only to a caller
            # who may make the call (and, through the fingerprint, only to the caller who made it).
            user = await self.authenticator.user_of(call)
            self.dispatcher.admit(call.function, user)
        except errors.DormantError as refused:
            log.info("[%s] refused call of %s: %s", call.call_id, call.function, refused)
            if self.audit is not None:
                self.audit.refused(call, refused)
            await self._answer(transport, message, call, False, orjson.dumps(refused.to_payload()))
            return
        if self.audit is not None:
            self._callers[call.call_id] = user.user_id
        try:
            await self._handle_admitted(transport, message, call, user)
        finally:
            self._callers.pop(call.call_id, None)

    async def _handle_admitted(
        self, transport: Transport, message: Message, call: wire.Call, user: UserContext
    ) -> None:
        # A caller's retry of a call this runtime is running (same callId) is no new work: it waits for
        # that run's answer, so it neither counts against the limit nor is refused by it.
        fresh = call.call_id not in self._running
        limit = self.concurrency_limit
        if fresh and limit is not None and len(self._running) >= limit:
            # Refused before anything runs or is stored: calling again is safe (HTTP 429).
            throttled = errors.Throttled(
                f"{self.service} is at its concurrency limit ({limit} calls at once on this replica)",
                {"limit": limit},
            )
            await self._answer(transport, message, call, False, orjson.dumps(throttled.to_payload()))
            return
        if fresh:
            self._running.add(call.call_id)
        try:
            if self.dedup is None or not call.call_id_given:
                ok, body = await self.dispatcher.dispatch(call, user)
                await self._answer(transport, message, call, ok, orjson.dumps(body))
                return
            await self._handle_once(transport, message, call, user, self.dedup)
        finally:
            if fresh:
                self._running.discard(call.call_id)

    async def _handle_once(
        self, transport: Transport, message: Message, call: wire.Call, user: UserContext, dedup: Deduplicator
    ) -> None:
        """Run the call at most once across every runtime of the service; answer repeats from the store.

        Every path ends in an answer (then the acknowledgement), or leaves the request unacknowledged
        only when the answer could not be published (the broker delivers it again).
        """
        problem = call_id_problem(call.call_id)
        if problem is not None:
            refused = errors.ValidationError(problem, {"limit": MAX_CALL_ID_BYTES})
            await self._answer(transport, message, call, False, orjson.dumps(refused.to_payload()))
            return
        claim = Claim(call.function, call.call_id, fingerprint(call.params, caller=user.user_id))
        runs = 0
        while True:
            try:
                state = await self._await_turn(call, claim, dedup)
            except errors.DormantError as exc:
                await self._answer(transport, message, call, False, orjson.dumps(exc.to_payload()))
                return
            if state.kind == "done":
                self._callers.pop(call.call_id, None)  # answered from the store: not run again
                _tracing.replayed()
                await self._answer(transport, message, call, bool(state.ok), state.response or b"null")
                return
            if state.kind == "conflict":
                if self.audit is not None:
                    detail = {"callId": call.call_id, "function": call.function}
                    self.audit.security("callid-reused", self._callers.pop(call.call_id, None), detail)
                reused = errors.Conflict(
                    f"callId {call.call_id!r} was already used for a {call.function} call with another"
                    " input or by another caller; use a new callId for a new call",
                    {"callId": call.call_id, "function": call.function},
                )
                await self._answer(transport, message, call, False, orjson.dumps(reused.to_payload()))
                return
            # The call is ours (claimed, taken over from a dead owner, or ours again after a lost commit).
            runs += 1
            try:
                outcome = await self.dispatcher.run(call, user)
            except asyncio.CancelledError:
                await dedup.abandon(claim.key)
                raise
            response = orjson.dumps(outcome.body)
            if outcome.tx is None:
                await self._finish_and_answer(transport, message, call, claim, outcome, response, dedup)
                return
            ended = await self._commit_with_answer(claim, outcome, response, dedup)
            if ended == "answer":
                await self._answer(transport, message, call, outcome.ok, response)
                return
            if ended == "failed":
                failed = errors.SystemError(
                    f"{call.function} could not commit its writes", {"callId": call.call_id}
                )
                await self._answer(transport, message, call, False, orjson.dumps(failed.to_payload()))
                return
            # "again": the claim was taken over (this runtime froze past its lease), or the database
            # connection broke before the commit was confirmed; the writes are rolled back or were
            # committed with their answer. The store says which: claim again, and answer what it finds,
            # wait for the new owner, or run the call again if it is still (or again) ours.
            if runs >= MAX_RUNS_PER_DELIVERY:
                log.warning("[%s] gave up after %d runs could not commit", call.call_id, runs)
                await dedup.abandon(claim.key)
                lost = errors.Unavailable(
                    "the database connection was lost while the call ran; retry later",
                    {"callId": call.call_id},
                )
                await self._answer(transport, message, call, False, orjson.dumps(lost.to_payload()))
                return

    async def _await_turn(self, call: wire.Call, claim: Claim, dedup: Deduplicator) -> CallState:
        """Claim the call, or wait for whoever runs it: ``run``, ``done`` or ``conflict``.

        An unreachable store (a database restart) is retried until the call's deadline (at most
        ``STORE_OUTAGE_S``): a transient store error never becomes the answer of a call that could still
        be served. Raises the typed error to answer otherwise.
        """
        give_up = time.time() + STORE_OUTAGE_S
        if call.deadline is not None:
            give_up = min(give_up, call.deadline)
        delay = STORE_RETRY_MIN_S
        while True:
            try:
                state = await dedup.claim(claim)
                if state.kind == "running":
                    state = await dedup.wait(claim, call.deadline)
                return state
            except TimeoutError:
                raise errors.TimeoutError("the deadline passed while the same call ran elsewhere") from None
            except CatalogUnavailable as exc:
                if time.time() + delay >= give_up:
                    log.warning("[%s] call de-duplication store unavailable: %s", call.call_id, exc)
                    raise errors.Unavailable(
                        "the call de-duplication store is unavailable; retry later"
                    ) from None
                log.info("[%s] call de-duplication store unavailable, retrying: %s", call.call_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_S)
            except Exception as exc:
                log.error("[%s] the call de-duplication store refused the call: %r", call.call_id, exc)
                raise errors.SystemError("the call de-duplication store refused the call") from None

    async def _finish_and_answer(
        self,
        transport: Transport,
        message: Message,
        call: wire.Call,
        claim: Claim,
        outcome: Outcome,
        response: bytes,
        dedup: Deduplicator,
    ) -> None:
        """No transaction: store the answer and publish it at once; the request is acknowledged only
        after both, so a crash in between means a redelivery that finds the stored answer."""
        _, published = await asyncio.gather(
            dedup.finish(claim.key, outcome.ok, response, outcome.error_type),
            self._publish_answer(transport, call, outcome.ok, response),
        )
        if published:
            message.ack()

    async def _commit_with_answer(
        self, claim: Claim, outcome: Outcome, response: bytes, dedup: Deduplicator
    ) -> Literal["answer", "again", "failed"]:
        """End the handler's transaction: commit it together with its stored answer, fenced by the claim.

        ``answer``: the outcome stands (committed with its stored answer, or an error that is not stored:
        rolled back and the claim released). ``again``: the claim was lost or the connection broke; the
        writes are rolled back, or committed with their answer if the break came after the commit.
        ``failed``: the transaction could not commit for a reason a retry cannot fix (rolled back, the
        claim released). Never raises.
        """
        transactions = self.dispatcher.transactions
        assert transactions is not None
        tx = outcome.tx
        if not outcome.ok and is_broken(tx):
            # The handler failed because its database connection was lost (a restart): nothing was
            # written; run it again on a fresh connection.
            await self._end_quietly(claim, tx, commit=False)
            dedup.settled(claim.key, outcome.ok, response, stored=False)
            return "again"
        if not (outcome.ok or outcome.error_type in STORED_ERROR_TYPES):
            await self._end_quietly(claim, tx, commit=False)
            await dedup.finish(claim.key, outcome.ok, response, outcome.error_type)
            return "answer"
        stored = False
        try:
            await leave_caller_role(tx)  # the DataStore's statements ran as the caller; the fence does not
            stored = await dedup.store.complete_in(tx, claim.key, outcome.ok, response)
            await transactions.end(tx, commit=stored)
        except Exception as exc:
            if is_broken(tx) or is_transient(exc):
                log.warning("[%s] the commit of the call's writes was cut off: %s", claim.call_id, exc)
                await self._end_quietly(claim, tx, commit=False)
                dedup.settled(claim.key, outcome.ok, response, stored=False)
                return "again"
            log.error("[%s] committing the call's writes failed: %r", claim.call_id, exc)
            await self._end_quietly(claim, tx, commit=False)
            await dedup.finish(claim.key, False, response, "SystemError")
            return "failed"
        dedup.settled(claim.key, outcome.ok, response, stored=stored)
        return "answer" if stored else "again"

    async def _end_quietly(self, claim: Claim, tx: Any, *, commit: bool) -> None:
        transactions = self.dispatcher.transactions
        assert transactions is not None
        try:
            await transactions.end(tx, commit=commit)
        except Exception as exc:
            log.info("[%s] ending the handler's transaction: %s", claim.call_id, exc)

    async def _answer(
        self, transport: Transport, message: Message, call: wire.Call, ok: bool, body_json: bytes
    ) -> None:
        """Publish the response (QoS 1, confirmed by the broker), then acknowledge the request."""
        if await self._publish_answer(transport, call, ok, body_json):
            message.ack()

    async def _publish_answer(
        self, transport: Transport, call: wire.Call, ok: bool, body_json: bytes
    ) -> bool:
        """True once the broker has the answer (or there is nobody to answer)."""
        if self.stats is not None:
            self.stats.record(ok, body_json, call.function)
        if self.audit is not None and call.call_id in self._callers:
            caller = self._callers.pop(call.call_id)
            self.audit.executed(call, caller, ok, None if ok else _error_type(body_json))
        _tracing.answered(ok, body_json)
        if not call.reply_to:
            return True
        payload, props = wire.encode_response_json(call, ok, body_json)
        try:
            with _tracing.response(call, ok, len(payload)):  # function.response
                await transport.publish(
                    Message(
                        call.reply_to,
                        payload,
                        qos=1,
                        correlation=call.correlation,
                        user_properties=props,
                        expiry_s=wire.reply_expiry(call.deadline),
                    )
                )
        except TransportError as exc:
            if exc.reason in PERMANENT_PUBLISH_FAILURES:
                # The answer can never be delivered there (refused before sending, or by the broker's
                # ACL): redelivering the request would fail the same way forever, so it is settled.
                log.warning(
                    "[%s] the response cannot be published to %r: %s", call.call_id, call.reply_to, exc
                )
                return True
            # Not acknowledged: the broker delivers the request again; the stored answer goes then.
            log.warning("[%s] could not publish the response: %s", call.call_id, exc)
            return False
        return True

    async def drain(self, timeout: float = 30.0) -> int:
        """Stop taking calls, finish those in flight (up to ``timeout``), disconnect.

        Returns the number of calls that were still running when the timeout cut them off.
        """
        if self._draining:
            await self._stopped.wait()
            return 0
        self._draining = True
        self._drain_requested.set()
        transport = self._transport
        if transport is not None and not self.replaced:
            with contextlib.suppress(TransportError):
                await transport.unsubscribe(self.filters)
            # Messages the broker sent before the UNSUBACK may still sit in the client's queue.
            await asyncio.sleep(QUEUE_SETTLE_S)
        if self._reader is not None:
            self._reader.cancel()
        pending = set(self._tasks)
        left = 0
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=timeout)
            for task in still_running:
                task.cancel()
            left = len(still_running)
        if transport is not None:
            await transport.close(end_session=not self.replaced)
        await self._stopped.wait()
        return left

    async def _sleep_unless_draining(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain_requested.wait(), delay)


def _error_type(body_json: bytes) -> str | None:
    """The wire error type of an error answer's body (for the audit log), if it names one."""
    try:
        body = orjson.loads(body_json)
    except orjson.JSONDecodeError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind if isinstance(kind, str) else None
