"""Serving one loaded service over MQTT: subscribe, decode, dispatch concurrently, reply, drain.

A ``Server`` owns the broker connection of a runtime process. It reconnects and resubscribes after
a lost connection, bounds the calls in flight, and on ``drain()`` stops taking new calls (it
unsubscribes, so the broker hands them to other members of the shared group), finishes the calls
it already holds, then disconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from dormant import wire
from dormant.transport import Inbound, Transport, TransportError, new_transport

from .dispatcher import Dispatcher

log = logging.getLogger("dormant.runtime")

DEFAULT_MAX_IN_FLIGHT = 256
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
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.dispatcher = dispatcher
        self.broker_url = broker_url
        self.service = dispatcher.service.name
        self.version = version
        self.live = live
        self.client_id = client_id
        self.filters = wire.serving_filters(self.service, version, live=live)
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._transport: Transport | None = None
        self._ready = asyncio.Event()
        self._draining = False
        self._drain_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def wait_ready(self) -> None:
        """Return once the first subscription is in place."""
        await self._ready.wait()

    async def run(self) -> None:
        """Serve until drained."""
        delay = RECONNECT_MIN_S
        while not self._draining:
            transport = new_transport(self.broker_url, client_id=self.client_id)
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
            if not self._draining:
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
            log.warning("%s", exc)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _handle(self, transport: Transport, message: Inbound) -> None:
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
            await self._reply(transport, call, *wire.encode_error(call, rejected.error))
            return
        ok, body = await self.dispatcher.dispatch(call)
        await self._reply(transport, call, *wire.encode_response(call, ok, body))

    async def _reply(
        self, transport: Transport, call: wire.Call, payload: bytes, props: tuple[tuple[str, str], ...]
    ) -> None:
        if not call.reply_to:
            return
        expiry = None
        if call.deadline is not None:
            expiry = max(1, int(call.deadline - time.time()) + 1)
        try:
            await transport.publish(
                call.reply_to,
                payload,
                qos=1,
                correlation=call.correlation,
                user_properties=props,
                expiry_s=expiry,
            )
        except TransportError as exc:
            log.warning("[%s] could not publish the response: %s", call.call_id, exc)

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
        if transport is not None:
            with contextlib.suppress(TransportError):
                await transport.unsubscribe(self.filters)
            # Messages the broker sent before the UNSUBACK may still sit in the client's queue.
            await asyncio.sleep(QUEUE_SETTLE_S)
        if self._reader is not None:
            self._reader.cancel()
        pending = set(self._tasks)
        if pending:
            _, still_running = await asyncio.wait(pending, timeout=timeout)
            for task in still_running:
                task.cancel()
            left = len(still_running)
        else:
            left = 0
        if transport is not None:
            await transport.close()
        await self._stopped.wait()
        return left

    async def _sleep_unless_draining(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain_requested.wait(), delay)
