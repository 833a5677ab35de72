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

import orjson

from dormant import errors, wire
from dormant.transport import SESSION_TAKEN_OVER, Inbound, Transport, TransportError, new_transport

from .dedup import STORED_ERROR_TYPES, Deduplicator
from .dispatcher import Dispatcher, Outcome
from .stats import CallStats, mark_start

log = logging.getLogger("dormant.runtime")

DEFAULT_MAX_IN_FLIGHT = 256
SESSION_EXPIRY_S = 120
RECONNECT_MIN_S = 0.05
RECONNECT_MAX_S = 2.0
QUEUE_SETTLE_S = 0.1


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
    ) -> None:
        self.dispatcher = dispatcher
        self.broker_url = broker_url
        self.service = dispatcher.service.name
        self.version = version
        self.live = live
        self.client_id = client_id
        self.dedup = dedup
        self.stats = stats
        self.filters = wire.serving_filters(self.service, version, live=live)
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

    async def wait_ready(self) -> None:
        """Return once the first subscription is in place."""
        await self._ready.wait()

    async def run(self) -> None:
        """Serve until drained."""
        delay = RECONNECT_MIN_S
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
                await transport.subscribe(self.filters, qos=1)
            except TransportError as exc:
                log.warning("broker unreachable (%s); retrying in %.2fs", exc, delay)
                await transport.close()
                await self._sleep_unless_draining(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_MIN_S
            self._transport = transport
            self._ready.set()
            log.info("serving %s v%d on %s", self.service, self.version, ", ".join(self.filters))
            self._reader = asyncio.create_task(self._read(transport))
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

    async def _read(self, transport: Transport) -> None:
        try:
            async for message in transport.messages():
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(transport, message))
                self._tasks.add(task)
                task.add_done_callback(self._done)
        except TransportError as exc:
            if exc.reason == SESSION_TAKEN_OVER:
                self.replaced = True
            log.warning("%s", exc)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle(self, transport: Transport, message: Inbound) -> None:
        mark_start()
        try:
            await self._handle_message(transport, message)
        except Exception:
            # A bug in answering must not leave the request to be redelivered forever.
            log.exception("answering a request on %s failed", message.topic)
            message.ack()

    async def _handle_message(self, transport: Transport, message: Inbound) -> None:
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
            await self._answer(transport, message, call, False, orjson.dumps(rejected.error.to_payload()))
            return
        if self.dedup is None or not call.call_id_given:
            ok, body = await self.dispatcher.dispatch(call)
            await self._answer(transport, message, call, ok, orjson.dumps(body))
            return
        await self._handle_once(transport, message, call, self.dedup)

    async def _handle_once(
        self, transport: Transport, message: Inbound, call: wire.Call, dedup: Deduplicator
    ) -> None:
        """Run the call at most once across every runtime of the service; answer repeats from the store."""
        try:
            state = await dedup.claim(call.call_id)
            if state.kind == "running":
                state = await dedup.wait(call.call_id, call.deadline)
        except TimeoutError:
            late = errors.TimeoutError("the deadline passed while the same call ran elsewhere")
            await self._answer(transport, message, call, False, orjson.dumps(late.to_payload()))
            return
        except Exception as exc:
            log.warning("[%s] call de-duplication store unavailable: %s", call.call_id, exc)
            down = errors.Unavailable("the call de-duplication store is unavailable; retry later")
            await self._answer(transport, message, call, False, orjson.dumps(down.to_payload()))
            return
        if state.kind == "done":
            await self._answer(transport, message, call, bool(state.ok), state.response or b"null")
            return
        try:
            outcome = await self.dispatcher.run(call)
        except asyncio.CancelledError:
            await dedup.abandon(call.call_id)
            raise
        response = orjson.dumps(outcome.body)
        if outcome.tx is not None:
            # A transaction commits with its stored answer first: an answer must never announce writes
            # that were then rolled back.
            stored = await self._commit_with_answer(call, outcome, response, dedup)
            if not stored:
                # Another runtime took the call over (this one froze past its lease): its answer counts,
                # and this run's writes were rolled back.
                try:
                    state = await dedup.wait(call.call_id, call.deadline)
                except Exception:
                    return
                if state.kind == "done":
                    await self._answer(transport, message, call, bool(state.ok), state.response or b"null")
                return
            await self._answer(transport, message, call, outcome.ok, response)
            return
        # No transaction: store the answer and publish it at once; the request is acknowledged only
        # after both, so a crash in between means a redelivery that finds the stored answer.
        finished, published = await asyncio.gather(
            dedup.finish(call.call_id, outcome.ok, response, outcome.error_type),
            self._publish_answer(transport, call, outcome.ok, response),
            return_exceptions=True,
        )
        if isinstance(finished, BaseException):
            log.warning(
                "[%s] could not store the answer (a retry may run it again): %s", call.call_id, finished
            )
        if published is True:
            message.ack()

    async def _commit_with_answer(
        self, call: wire.Call, outcome: Outcome, response: bytes, dedup: Deduplicator
    ) -> bool:
        """Commit the handler's transaction together with its stored answer, fenced by the claim.

        False when the claim was lost: everything is rolled back.
        """
        transactions = self.dispatcher.transactions
        assert transactions is not None
        keep = outcome.ok or outcome.error_type in STORED_ERROR_TYPES
        stored = False
        try:
            if keep:
                stored = await dedup.store.complete_in(outcome.tx, call.call_id, outcome.ok, response)
            await transactions.end(outcome.tx, commit=stored)
        except Exception as exc:
            log.warning("[%s] committing the call's writes failed: %s", call.call_id, exc)
            stored = False
        if not keep:
            await dedup.finish(call.call_id, outcome.ok, response, outcome.error_type)
            return True
        await dedup.settled(call.call_id, outcome.ok, response, stored=stored)
        return stored

    async def _answer(
        self, transport: Transport, message: Inbound, call: wire.Call, ok: bool, body_json: bytes
    ) -> None:
        """Publish the response (QoS 1, confirmed by the broker), then acknowledge the request."""
        if await self._publish_answer(transport, call, ok, body_json):
            message.ack()

    async def _publish_answer(
        self, transport: Transport, call: wire.Call, ok: bool, body_json: bytes
    ) -> bool:
        """True once the broker has the answer (or there is nobody to answer)."""
        if self.stats is not None:
            self.stats.record(ok, body_json)
        if not call.reply_to:
            return True
        payload, props = wire.encode_response_json(call, ok, body_json)
        try:
            await transport.publish(
                call.reply_to,
                payload,
                qos=1,
                correlation=call.correlation,
                user_properties=props,
                expiry_s=wire.reply_expiry(call.deadline),
            )
        except TransportError as exc:
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
