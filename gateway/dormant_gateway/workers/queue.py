"""Queue triggers: RabbitMQ consumers that call a function once per message.

One consumer per enabled queue trigger, on one shared robust connection per replica. A consumer
takes up to ``batchSize`` messages at a time (the channel's prefetch) and processes the batch
concurrently: each message's JSON body is the function's input. A message is acknowledged after its
call succeeds; a failed call is retried with exponential backoff (``backoffSeconds`` * 2**n) up to
``maxAttempts``; then, or at once for a permanent error (bad JSON, ValidationError, NotFound ...), the
message is published to the dead-letter queue (with the error in headers; publisher-confirmed) and
only then acknowledged. A replica that dies mid-batch leaves its messages unacknowledged, so RabbitMQ
delivers them again; the callId (from the message id) lets the runtime de-duplicate the repeat.
Each call carries the gateway's own token and names the trigger's owner in a header (``auth/acting.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from dormant import _tracing, callid
from dormant.errors import DormantError, SystemError, ValidationError
from dormant_catalog import CatalogError
from dormant_catalog.gateway import TriggerRecord
from dormant_catalog.gateway import triggers as trigger_sql

from ..auth.acting import trigger_headers
from ..state import GatewayState
from ..targets import route
from ..triggers.settings import validate_trigger
from .backoff import backoff_s, retryable

log = logging.getLogger("dormant.gateway.queue")

RELOAD_S = 1.0
BATCH_WINDOW_S = 0.05
CALL_TIMEOUT_S = 30.0


class QueueSupervisor:
    """Keeps one consumer task per enabled queue trigger; connects to RabbitMQ only when one exists."""

    def __init__(self, gateway: GatewayState) -> None:
        self._gateway = gateway
        self._connection: AbstractRobustConnection | None = None
        self._consumers: dict[str, tuple[TriggerRecord, asyncio.Task[None]]] = {}
        self._warned: set[str] = set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self._sync()
                except CatalogError as exc:
                    log.warning("queue triggers: catalog unavailable: %s", exc)
                except (aio_pika.exceptions.AMQPError, OSError) as exc:
                    log.warning("queue triggers: RabbitMQ unavailable: %s", type(exc).__name__)
                await asyncio.sleep(RELOAD_S)
        finally:
            for _, task in self._consumers.values():
                task.cancel()
            await asyncio.gather(*(t for _, t in self._consumers.values()), return_exceptions=True)
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()

    async def _sync(self) -> None:
        wanted: dict[str, TriggerRecord] = {}
        for record in await self._gateway.db.run(trigger_sql.enabled_triggers, "queue"):
            try:
                # Rows are validated on the way in; one written some other way is skipped, not fatal.
                config = validate_trigger(
                    {"type": "queue", "function": record.target, "config": record.config}
                )[2]
            except (ValidationError, TypeError, AttributeError) as exc:
                if record.trigger_id not in self._warned:
                    self._warned.add(record.trigger_id)
                    log.error("queue trigger %s skipped: %s", record.trigger_id, exc)
                continue
            wanted[record.trigger_id] = replace(record, config=config)
        for trigger_id, (record, task) in list(self._consumers.items()):
            if trigger_id not in wanted or wanted[trigger_id].config != record.config or task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                del self._consumers[trigger_id]
        if not wanted:
            return
        url = self._gateway.config.rabbitmq_url
        if url is None:  # triggers made while a RabbitMQ was configured; refused for new ones
            if "no-rabbitmq" not in self._warned:
                self._warned.add("no-rabbitmq")
                log.error("%d queue trigger(s) not consumed: no RabbitMQ configured", len(wanted))
            return
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect_robust(url, timeout=5)
        for trigger_id, record in wanted.items():
            if trigger_id not in self._consumers:
                consumer = QueueConsumer(self._gateway, record, self._connection)
                self._consumers[trigger_id] = (record, asyncio.create_task(consumer.run()))


class QueueConsumer:
    def __init__(
        self, gateway: GatewayState, trigger: TriggerRecord, connection: AbstractRobustConnection
    ) -> None:
        self._gateway = gateway
        self._trigger = trigger
        self._connection = connection
        config = trigger.config
        self._queue_name = str(config["queue"])
        self._dlq_name = str(config["deadLetterQueue"])
        self._batch = int(config["batchSize"])
        self._max_attempts = int(config["maxAttempts"])
        self._backoff = float(config["backoffSeconds"])

    async def run(self) -> None:
        channel = await self._connection.channel(publisher_confirms=True)
        try:
            await channel.set_qos(prefetch_count=self._batch)
            queue = await channel.declare_queue(self._queue_name, durable=True)
            await channel.declare_queue(self._dlq_name, durable=True)
            inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
            tag = await queue.consume(inbox.put)
            try:
                while True:
                    batch = [await inbox.get()]
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(BATCH_WINDOW_S):
                            while len(batch) < self._batch:
                                batch.append(await inbox.get())
                    await self._process(channel, batch)
            finally:
                with contextlib.suppress(Exception):
                    await queue.cancel(tag)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _process(
        self, channel: aio_pika.abc.AbstractChannel, batch: list[AbstractIncomingMessage]
    ) -> None:
        outcomes = await asyncio.gather(*(self._one(channel, m) for m in batch))
        counts = {"fired": len(batch), "succeeded": 0, "failed": 0, "retried": 0, "dead_lettered": 0}
        for succeeded, retries in outcomes:
            counts["retried"] += retries
            if succeeded:
                counts["succeeded"] += 1
            else:
                counts["failed"] += 1
                counts["dead_lettered"] += 1
        try:
            await self._gateway.db.run(trigger_sql.add_metrics, self._trigger.trigger_id, **counts)
        except CatalogError as exc:
            log.warning("queue trigger %s: metrics not recorded: %s", self._trigger.trigger_id, exc)

    def _call_id(self, message: AbstractIncomingMessage) -> str:
        return callid.queued(self._trigger.trigger_id, message.message_id, message.body)

    async def _one(
        self, channel: aio_pika.abc.AbstractChannel, message: AbstractIncomingMessage
    ) -> tuple[bool, int]:
        """Process one message to the end: (succeeded, retries)."""
        gateway = self._gateway
        record = self._trigger
        call_id = self._call_id(message)
        error: DormantError
        retries = 0
        try:
            params: Any = orjson.loads(message.body)
        except orjson.JSONDecodeError:
            error = ValidationError("the message body is not JSON")
        else:
            attempt = 0
            while True:
                attempt += 1
                attempt_id = f"{call_id}.{attempt}"
                try:
                    with _tracing.invocation(
                        record.function_name, record.target, trigger="pubsub", call_id=attempt_id
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
                            call_id=attempt_id,
                            headers={
                                "x-dormant-queue": self._queue_name,
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
                    return True, retries
                if not retryable(error) or attempt >= self._max_attempts:
                    break
                retries += 1
                await asyncio.sleep(backoff_s(attempt, base_s=self._backoff, max_s=300.0))
        await channel.default_exchange.publish(
            aio_pika.Message(
                body=message.body,
                content_type=message.content_type,
                message_id=message.message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={
                    **(message.headers or {}),
                    "x-dormant-error-type": error.type,
                    "x-dormant-error-message": error.message[:1000],
                    "x-dormant-source-queue": self._queue_name,
                    "x-dormant-trigger": record.trigger_id,
                },
            ),
            routing_key=self._dlq_name,
        )
        await message.ack()
        return False, retries
