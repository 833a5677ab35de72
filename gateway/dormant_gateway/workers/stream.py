"""Stream triggers: NATS JetStream pull consumers that call a function once per stream message.

One durable pull consumer per enabled stream trigger, named after the trigger (``dormant-{trigger}``),
so JetStream itself keeps the trigger's position across gateway restarts. Every replica pulls from
that same consumer and JetStream hands each message to one of them; the consumer's
``max_ack_pending`` is the trigger's ``batchSize``, so across all replicas at most ``batchSize``
messages are in flight (being called, or waiting for a retry), as with one consumer. A consumer takes
up to ``batchSize`` messages, waiting up to ``batchWindowMs`` for the batch to fill, and calls the
function for each message of the batch concurrently (the message data, as JSON, is the input).

A message is acknowledged only after the function answered. A failed call is given back to JetStream
with a delayed negative acknowledgement (``backoffSeconds`` * 2**(n-1)), so the redelivery is the retry;
after ``maxAttempts`` deliveries, or at once for a permanent error (data that is not JSON,
ValidationError, NotFound ...), the message is published to the dead-letter subject (stored by a
stream: the publish is acknowledged by JetStream, with a ``Nats-Msg-Id`` so a repeat is dropped) and
only then acknowledged. While a call runs, the message's ack deadline is pushed back with progress
acks; a gateway that dies leaves its messages unacknowledged, and JetStream delivers them again after
``ACK_WAIT_S``; one that stops cleanly gives them back at once.

Every delivery of one message makes its call with the same callId, derived from the stream (its
creation time) and the message's stream sequence, so a redelivery after a crash is answered from the
runtime's de-duplication store instead of running the handler again. The runtime stores only
deterministic answers (results, ValidationError, BusinessLogicError ...) and lets a retry after a
SystemError, TimeoutError or Unavailable run again; a BusinessLogicError, which a retry would only
replay, is therefore dead-lettered at once here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any, Literal

import nats
import nats.errors
import nats.js.errors
import orjson
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from dormant import _tracing
from dormant.errors import DormantError, SystemError, ValidationError
from dormant_catalog import CatalogError
from dormant_catalog.gateway import TriggerRecord
from dormant_catalog.gateway import triggers as trigger_sql

from ..auth.acting import trigger_headers
from ..state import GatewayState
from ..targets import route
from ..triggers.settings import validate_trigger
from .backoff import backoff_s, retryable

log = logging.getLogger("dormant.gateway.stream")

RELOAD_S = 1.0
ACK_WAIT_S = 6.0
"""How long JetStream waits for an acknowledgement before it delivers a message again (a dead gateway)."""
PROGRESS_S = ACK_WAIT_S / 4
"""How often a message whose call still runs gets a progress ack (pushing its ack deadline back)."""
IDLE_FETCH_S = 5.0
"""How long one pull waits for the first message of a batch (then it pulls again)."""
MIN_FETCH_S = 0.002
CALL_TIMEOUT_S = 30.0
MAX_BACKOFF_S = 300.0
REPLAYED = frozenset({"BusinessLogicError"})
"""Retryable errors that the runtime stores under the callId: a retry with that callId only replays them."""

Outcome = Literal["succeeded", "retried", "dead_lettered", "held"]


def durable_name(trigger_id: str) -> str:
    """The JetStream durable consumer of a trigger: its position survives gateway restarts."""
    return f"dormant-{trigger_id}"


def stream_call_id(trigger_id: str, stream_created_ms: int, sequence: int) -> str:
    """The callId of one stream message: the same for every delivery of it, another for a stream that
    was deleted and made again (its sequences start over)."""
    return f"js-{trigger_id}-{stream_created_ms}-{sequence}"


def _header_value(text: str) -> str:
    """A NATS header value: one line, no control characters."""
    return "".join(c if c.isprintable() else " " for c in text)[:1000]


class StreamSetupError(Exception):
    """A stream trigger cannot consume: no such stream, a subject the stream does not hold ..."""


class StreamSupervisor:
    """Keeps one consumer task per enabled stream trigger; connects to NATS only when one exists."""

    def __init__(self, gateway: GatewayState) -> None:
        self._gateway = gateway
        self._connection: NatsClient | None = None
        self._consumers: dict[str, tuple[TriggerRecord, asyncio.Task[None]]] = {}
        self._warned: set[str] = set()
        self._marked: dict[str, str] = {}
        """Trigger id -> the last error written to its row (written again only when it changes)."""

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._sync()
                except CatalogError as exc:
                    log.warning("stream triggers: catalog unavailable: %s", exc)
                except (nats.errors.Error, OSError) as exc:
                    log.warning("stream triggers: NATS unavailable: %s", type(exc).__name__)
                await asyncio.sleep(RELOAD_S)
        finally:
            for _, task in self._consumers.values():
                task.cancel()
            await asyncio.gather(*(t for _, t in self._consumers.values()), return_exceptions=True)
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()

    async def mark(self, record: TriggerRecord, reason: str) -> None:
        """Log why a trigger does not consume and show it on the trigger (``lastError``)."""
        if self._marked.get(record.trigger_id) == reason:
            return
        self._marked[record.trigger_id] = reason
        log.error("stream trigger %s: %s", record.trigger_id, reason)
        try:
            await self._gateway.db.run(trigger_sql.mark_error, record.trigger_id, reason[:1000])
        except CatalogError as exc:
            log.warning("stream trigger %s: error not recorded: %s", record.trigger_id, exc)

    async def _sync(self) -> None:
        wanted: dict[str, TriggerRecord] = {}
        for record in await self._gateway.db.run(trigger_sql.enabled_triggers, "stream"):
            try:
                # Rows are validated on the way in; one written some other way is skipped, not fatal.
                config = validate_trigger(
                    {"type": "stream", "function": record.target, "config": record.config}
                )[2]
            except (ValidationError, TypeError, AttributeError) as exc:
                if record.trigger_id not in self._warned:
                    self._warned.add(record.trigger_id)
                    log.error("stream trigger %s skipped: %s", record.trigger_id, exc)
                continue
            wanted[record.trigger_id] = replace(record, config=config)
        for trigger_id, (record, task) in list(self._consumers.items()):
            if trigger_id not in wanted or wanted[trigger_id].config != record.config or task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                del self._consumers[trigger_id]
                if trigger_id not in wanted:
                    await self._forget(record)
        if not wanted:
            return
        url = self._gateway.config.nats_url
        if url is None:  # triggers made while a NATS was configured; refused for new ones
            for record in wanted.values():
                await self.mark(record, "not consumed: the gateway has no NATS (DORMANT_NATS_URL)")
            return
        if self._connection is None or self._connection.is_closed:
            self._connection = await nats.connect(
                url,
                name=f"dormant-gateway-{self._gateway.config.replica_id or 'gw'}",
                connect_timeout=5,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                error_cb=_connection_error,
                disconnected_cb=_disconnected,
            )
        js = self._connection.jetstream()
        for trigger_id, record in wanted.items():
            if trigger_id not in self._consumers:
                consumer = StreamConsumer(self._gateway, record, js, self)
                self._consumers[trigger_id] = (record, asyncio.create_task(consumer.run()))

    async def _forget(self, record: TriggerRecord) -> None:
        """A trigger that was deleted (not merely disabled) takes its durable consumer with it."""
        self._marked.pop(record.trigger_id, None)
        if self._connection is None or self._connection.is_closed:
            return
        if await self._gateway.db.run(trigger_sql.get_trigger, record.function_name, record.trigger_id):
            return  # disabled: keep the position for when it is enabled again
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await self._connection.jetstream().delete_consumer(
                str(record.config["stream"]), durable_name(record.trigger_id)
            )


async def _connection_error(exc: Exception) -> None:
    log.warning("stream triggers: NATS connection error: %s", type(exc).__name__)


async def _disconnected() -> None:
    log.warning("stream triggers: disconnected from NATS; reconnecting")


class StreamConsumer:
    def __init__(
        self,
        gateway: GatewayState,
        trigger: TriggerRecord,
        js: JetStreamContext,
        supervisor: StreamSupervisor,
    ) -> None:
        self._gateway = gateway
        self._trigger = trigger
        self._js = js
        self._supervisor = supervisor
        config = trigger.config
        self._stream = str(config["stream"])
        self._subject = str(config["subject"])
        self._dead_subject = str(config["deadLetterSubject"])
        self._batch = int(config["batchSize"])
        self._window_s = int(config["batchWindowMs"]) / 1000
        self._start = str(config["startPosition"])
        self._max_attempts = int(config["maxAttempts"])
        self._backoff = float(config["backoffSeconds"])
        self._stream_created_ms = 0

    def _consumer_config(self) -> ConsumerConfig:
        durable = durable_name(self._trigger.trigger_id)
        config = ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=self._subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S,
            max_deliver=-1,  # attempts are counted here, so the last one can be dead-lettered
            max_ack_pending=self._batch,
        )
        if self._start == "start":
            config.deliver_policy = DeliverPolicy.ALL
        else:
            # "latest": what is published after the trigger was made, however long until a gateway
            # creates the consumer (DeliverPolicy.NEW would start only at the consumer's creation).
            config.deliver_policy = DeliverPolicy.BY_START_TIME
            config.opt_start_time = self._trigger.created_at
        return config

    async def run(self) -> None:
        try:
            info = await self._js.stream_info(self._stream)
            self._stream_created_ms = int(info.created.timestamp() * 1000) if info.created else 0
            subscription = await self._js.pull_subscribe(
                self._subject,
                durable=durable_name(self._trigger.trigger_id),
                stream=self._stream,
                config=self._consumer_config(),
            )
        except nats.js.errors.NotFoundError:
            await self._supervisor.mark(self._trigger, f"no JetStream stream {self._stream!r}")
            return
        except nats.js.errors.APIError as exc:
            await self._supervisor.mark(
                self._trigger, f"cannot consume {self._subject!r} from {self._stream!r}: {exc.description}"
            )
            return
        try:
            while True:
                batch = await self._next_batch(subscription)
                await self._process(batch)
        finally:
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _next_batch(self, subscription: JetStreamContext.PullSubscription) -> list[Msg]:
        """Wait for a first message, then up to ``batchWindowMs`` for the batch to fill."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                batch = await subscription.fetch(self._batch, timeout=IDLE_FETCH_S)
                break
            except TimeoutError:
                continue
        deadline = loop.time() + self._window_s
        while len(batch) < self._batch:
            remaining = deadline - loop.time()
            if remaining < MIN_FETCH_S:
                break
            try:
                batch += await subscription.fetch(self._batch - len(batch), timeout=remaining)
            except TimeoutError:
                break
        return batch

    async def _process(self, batch: list[Msg]) -> None:
        open_messages = set(range(len(batch)))
        keeper = asyncio.create_task(self._keep_alive(batch, open_messages))
        try:
            results = await asyncio.gather(
                *(self._one(m, i, open_messages) for i, m in enumerate(batch)), return_exceptions=True
            )
        finally:
            keeper.cancel()
            if open_messages:
                # Stopped mid-batch: give the messages back at once rather than after the ack wait; the
                # next delivery repeats their callIds, so a call that did finish is not run again.
                await asyncio.shield(self._give_back([batch[i] for i in open_messages]))
        counts = {"fired": 0, "succeeded": 0, "failed": 0, "retried": 0, "dead_lettered": 0}
        for message, outcome in zip(batch, results, strict=True):
            if isinstance(outcome, BaseException):
                # Settling with JetStream failed (connection lost): the message was given back above.
                log.warning("stream trigger %s: %s", self._trigger.trigger_id, type(outcome).__name__)
                continue
            if message.metadata.num_delivered == 1:
                counts["fired"] += 1
            if outcome == "succeeded":
                counts["succeeded"] += 1
            elif outcome == "retried":
                counts["retried"] += 1
            elif outcome == "dead_lettered":
                counts["failed"] += 1
                counts["dead_lettered"] += 1
        try:
            await self._gateway.db.run(trigger_sql.add_metrics, self._trigger.trigger_id, **counts)
        except CatalogError as exc:
            log.warning("stream trigger %s: metrics not recorded: %s", self._trigger.trigger_id, exc)

    async def _keep_alive(self, batch: list[Msg], open_messages: set[int]) -> None:
        while True:
            await asyncio.sleep(PROGRESS_S)
            for index in list(open_messages):
                with contextlib.suppress(nats.errors.Error):
                    await batch[index].in_progress()

    @staticmethod
    async def _give_back(messages: list[Msg]) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                for message in messages:
                    await message.nak()

    async def _one(self, message: Msg, index: int, open_messages: set[int]) -> Outcome:
        """Deliver one message to the function; settle it with JetStream. Returns what became of it."""
        gateway = self._gateway
        record = self._trigger
        meta = message.metadata
        sequence = meta.sequence.stream
        attempt = meta.num_delivered
        error: DormantError
        try:
            params: Any = orjson.loads(message.data)
        except orjson.JSONDecodeError:
            error = ValidationError("the message data is not JSON")
        else:
            call_id = stream_call_id(record.trigger_id, self._stream_created_ms, sequence)
            try:
                with _tracing.invocation(
                    record.function_name, record.target, trigger="pubsub", call_id=call_id
                ):
                    version = await route(
                        gateway,
                        record.function_name,
                        alias=record.config.get("alias"),
                        version=record.config.get("version"),
                    )
                    info = await gateway.function_info(record.function_name)
                    await gateway.client.call(
                        record.function_name,
                        record.target,
                        params,
                        timeout=info.timeout_s or CALL_TIMEOUT_S,
                        version=version,
                        call_id=call_id,
                        headers={
                            "x-dormant-stream": self._stream,
                            "x-dormant-stream-sequence": str(sequence),
                            "x-dormant-subject": message.subject,
                            **trigger_headers(record.created_by),
                        },
                        authorization=await gateway.own_authorization(),
                    )
            except DormantError as exc:
                error = exc
            except CatalogError as exc:
                error = SystemError(f"catalog: {exc}")
            else:
                await message.ack()
                open_messages.discard(index)
                return "succeeded"
        if retryable(error) and error.type not in REPLAYED and attempt < self._max_attempts:
            await message.nak(delay=backoff_s(attempt, base_s=self._backoff, max_s=MAX_BACKOFF_S))
            open_messages.discard(index)
            return "retried"
        headers = {
            **(message.headers or {}),
            "Nats-Msg-Id": f"dormant-dlq-{record.trigger_id}-{self._stream_created_ms}-{sequence}",
            "x-dormant-error-type": error.type,
            "x-dormant-error-message": _header_value(error.message),
            "x-dormant-source-stream": self._stream,
            "x-dormant-source-subject": _header_value(message.subject),
            "x-dormant-source-sequence": str(sequence),
            "x-dormant-attempts": str(attempt),
            "x-dormant-trigger": record.trigger_id,
        }
        try:
            await self._js.publish(self._dead_subject, message.data, headers=headers)
        except nats.errors.Error as exc:
            # Not stored, so not acknowledged: the message comes back and is dead-lettered again.
            await self._supervisor.mark(
                record,
                f"cannot dead-letter to {self._dead_subject!r} (no stream stores it?): {type(exc).__name__}",
            )
            await message.nak(delay=backoff_s(attempt, base_s=max(self._backoff, 1.0), max_s=MAX_BACKOFF_S))
            open_messages.discard(index)
            return "held"
        await message.ack()
        open_messages.discard(index)
        return "dead_lettered"
