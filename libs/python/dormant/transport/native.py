"""``NativeTransport``: Dormant's own asyncio MQTT 5 client (``dormant.mqtt``), the default transport.

It reports PUBACK reason codes (0x10 "no matching subscribers" lets callers fail fast with
``Unavailable``) and acknowledges on demand (``manual_ack``: a runtime acks a request only after its
answer is out), the two things the delivery guarantees need and aiomqtt hides. ``mqtts://`` URLs
connect over TLS (``_tls.tls_context``: the broker's certificate checked, a client certificate when
configured).
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator, Sequence

from .. import mqtt
from ..config import parse_broker_url
from ..mqtt import Message
from ._base import ConnectsOnEnter, TransportError
from ._tls import tls_context


class NativeTransport(ConnectsOnEnter):
    """Dormant's own asyncio MQTT 5 client (``dormant.mqtt``): PUBACK reason codes, manual acks."""

    def __init__(
        self,
        broker_url: str,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry_s: int = 0,
        keepalive: int = 30,
        manual_ack: bool = False,
    ) -> None:
        self._address = parse_broker_url(broker_url)
        self._manual_ack = manual_ack
        self._client_id = client_id or f"dormant-{uuid.uuid4().hex[:16]}"
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self._keepalive = keepalive
        self._conn: mqtt.MqttConnection | None = None
        self._closed = False

    async def connect(self) -> None:
        """Connect (over TLS for ``mqtts://``, as the URL's user); ``TransportError`` carries the
        CONNACK's reason code when the broker refused."""
        tls = tls_context(self._address)
        try:
            self._conn = await mqtt.connect(
                self._address.host,
                self._address.port,
                client_id=self._client_id,
                username=self._address.username,
                password=self._address.password,
                keepalive=self._keepalive,
                clean_start=self._clean_start,
                session_expiry_s=self._session_expiry_s,
                manual_ack=self._manual_ack,
                tls=tls,
            )
        except mqtt.MqttError as exc:
            raise TransportError(f"cannot connect to the broker: {exc}", exc.reason) from exc

    @property
    def session_present(self) -> bool:
        return self._conn is not None and self._conn.session_present

    def _require(self) -> mqtt.MqttConnection:
        if self._conn is None:
            raise TransportError("not connected")
        return self._conn

    async def close(self, *, end_session: bool = False) -> None:
        """Disconnect; ``end_session`` discards a persistent session instead of keeping it."""
        if self._closed:
            return
        self._closed = True
        if self._conn is not None:
            await self._conn.disconnect(
                session_expiry_s=0 if end_session and self._session_expiry_s else None
            )

    async def subscribe(self, filters: Sequence[str], qos: int = 1) -> None:
        try:
            await self._require().subscribe(filters, qos)
        except mqtt.MqttError as exc:
            raise TransportError(f"subscribe failed: {exc}", exc.reason) from exc

    async def unsubscribe(self, filters: Sequence[str]) -> None:
        try:
            await self._require().unsubscribe(filters)
        except mqtt.MqttError as exc:
            raise TransportError(f"unsubscribe failed: {exc}") from exc

    async def publish(self, message: Message) -> int:
        if message.expiry_s is not None and message.expiry_s < 1:
            # MQTT has no sub-second expiry; 0 would mean "never expires".
            message = dataclasses.replace(message, expiry_s=1)
        try:
            return await self._require().publish(message)
        except mqtt.MqttError as exc:
            raise TransportError(f"publish to {message.topic} failed: {exc}", exc.reason) from exc

    async def messages(self) -> AsyncIterator[Message]:
        conn = self._require()
        while True:
            message = await conn.queue.get()
            if message is None:
                if not self._closed:
                    reason = conn.disconnect_reason
                    raise TransportError(
                        "connection lost" + (f" ({mqtt.reason_name(reason)})" if reason else ""), reason
                    )
                return
            if self._manual_ack and message.qos == 1:
                message.ack = functools.partial(conn.ack, message)
            yield message
