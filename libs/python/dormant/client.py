"""``dormant.Client``: call functions over MQTT 5 and get results or typed errors back.

One client holds one broker connection and one reply inbox (``reply/{clientId}/#``); concurrent
calls are matched to their responses by Correlation Data (the callId).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from pydantic import BaseModel

from . import wire
from .config import Settings
from .errors import TimeoutError, Unavailable
from .transport import Transport, TransportError, new_transport

DEFAULT_TIMEOUT_S = 30.0


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
    ) -> None:
        self.broker_url = broker_url or Settings.from_env().broker_url
        self.client_id = client_id or f"dormant-client-{uuid.uuid4().hex[:16]}"
        self.default_timeout = timeout
        self.authorization = authorization
        self._inbox = wire.reply_topic(self.client_id)
        self._pending: dict[bytes, asyncio.Future[tuple[bytes, tuple[tuple[str, str], ...]]]] = {}
        self._transport: Transport | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        transport = new_transport(self.broker_url, client_id=self.client_id)
        try:
            await transport.connect()
        except TransportError as exc:
            raise Unavailable(str(exc), {"broker": _redact(self.broker_url)}) from None
        await transport.subscribe([wire.reply_filter(self.client_id)], qos=1)
        self._transport = transport
        self._reader = asyncio.create_task(self._read_replies(), name=f"dormant-replies-{self.client_id}")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, TransportError):
                await self._reader
            self._reader = None
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Unavailable("the client was closed"))
        self._pending.clear()

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
    ) -> Any:
        """Call ``service.function`` and return its JSON result, or raise the typed error.

        ``params`` is a mapping or a pydantic model (other JSON values are sent as they are and
        answered with ``ValidationError``). ``call_id`` reuses a callId, for a safe retry.
        """
        transport = self._require_transport()
        timeout = self.default_timeout if timeout is None else timeout
        correlation = _correlation(call_id)
        if isinstance(params, BaseModel):
            body: Any = params.model_dump(mode="json", by_alias=True, exclude_none=True)
        elif isinstance(params, Mapping):
            body = dict(params)
        else:
            body = {} if params is None else params
        topic = (
            wire.version_topic(service, version, function)
            if version is not None
            else wire.function_topic(service, function)
        )
        deadline = time.time() + timeout
        props = wire.request_properties(
            deadline=deadline, authorization=self.authorization, extra=tuple((headers or {}).items())
        )
        future: asyncio.Future[tuple[bytes, tuple[tuple[str, str], ...]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending[correlation] = future
        try:
            try:
                await transport.publish(
                    topic,
                    wire.encode_request(body),
                    qos=1,
                    response_topic=self._inbox,
                    correlation=correlation,
                    user_properties=props,
                    expiry_s=max(1, round(timeout)),
                )
            except TransportError as exc:
                raise Unavailable(str(exc)) from None
            try:
                payload, user_properties = await asyncio.wait_for(future, timeout)
            except builtins.TimeoutError:
                raise TimeoutError(
                    f"no response from {service}.{function} within {timeout:g}s",
                    {"callId": wire.call_id_text(correlation), "timeout": timeout},
                ) from None
        finally:
            self._pending.pop(correlation, None)
        return wire.decode_response(payload, user_properties)

    def _require_transport(self) -> Transport:
        if self._transport is None:
            raise RuntimeError("use `async with Client(...)` or await client.connect() first")
        return self._transport

    async def _read_replies(self) -> None:
        transport = self._require_transport()
        try:
            async for message in transport.messages():
                if message.correlation is None:
                    continue
                future = self._pending.get(message.correlation)
                if future is not None and not future.done():
                    future.set_result((message.payload, tuple(message.user_properties)))
        except TransportError as exc:
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(Unavailable(f"lost the broker connection: {exc}"))


def _correlation(call_id: bytes | str | None) -> bytes:
    if call_id is None:
        return wire.new_call_id()
    return call_id.encode() if isinstance(call_id, str) else call_id


def _redact(url: str) -> str:
    """A broker URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"
