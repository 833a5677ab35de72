"""In-process Messaging for handler unit tests (``dormant.testing``): no broker, the same contract.

``MemoryBus`` is the shared state of one test: the services callable in process (``TestClient``s by
service name), the events sent (``bus.events``, in order) and the subscribers. ``MemoryMessaging`` is one
call's view of it, as ``dormant.messaging.Messaging`` is: ``call`` runs the target through its
``TestClient`` as the same caller, with the same deterministic child callId (so a test can re-run a
parent and see the child de-duplicated by the callee's own store, where it has one); ``send`` to
``"service.function"`` is a one-way call, to any other name an event delivered to the subscribers of that
name; events carry the sender's subject, never the token.
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import wire
from .callid import child_call_id
from .context import UserContext
from .errors import NotFound, TimeoutError, ValidationError

__all__ = ["MemoryBus", "MemoryMessaging", "SentEvent"]


class _InProcessService(Protocol):
    async def call(
        self,
        function: str,
        params: Any = None,
        *,
        call_id: str | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        user: UserContext | None = None,
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class SentEvent:
    """An event as its subscribers get it."""

    name: str
    body: Any
    headers: dict[str, str]
    user_id: str | None
    event_id: str


EventHandler = Callable[[SentEvent], Awaitable[None]]


@dataclass
class MemoryBus:
    """What every ``MemoryMessaging`` of one test shares."""

    services: dict[str, _InProcessService] = field(default_factory=dict)
    events: list[SentEvent] = field(default_factory=list)
    subscribers: dict[str, list[EventHandler]] = field(default_factory=lambda: defaultdict(list))
    transfers: dict[str, list[list[bytes]]] = field(default_factory=lambda: defaultdict(list))

    def events_named(self, name: str) -> list[SentEvent]:
        return [event for event in self.events if event.name == name]


class MemoryMessaging:
    """One call's messaging: the caller of the call it serves, its callId as the parent of its calls."""

    def __init__(self, bus: MemoryBus, user: UserContext, parent_call_id: str) -> None:
        self.bus = bus
        self.user = user
        self.parent_call_id = parent_call_id
        self._sent: dict[str, int] = defaultdict(int)

    def next_call_id(self, target: str) -> str:
        self._sent[target] += 1
        return child_call_id(self.parent_call_id, target, self._sent[target])

    async def call(
        self,
        target: str,
        input: Any = None,
        *,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        service, _, function = target.partition(".")
        if not function:
            raise ValidationError(f"a call target is 'service.function', not {target!r}")
        call_id = self.next_call_id(target)
        callee = self.bus.services.get(service)
        if callee is None:
            raise NotFound(
                f"no service named {service!r} in this test (give it to the TestClient's services)"
            )
        return await callee.call(
            function, input, call_id=call_id, timeout=timeout, headers=headers, user=self.user
        )

    send_and_wait = call

    async def send(
        self, name_or_target: str, body: Any = None, *, headers: Mapping[str, str] | None = None
    ) -> str:
        service, _, function = name_or_target.partition(".")
        if function and service in self.bus.services:
            call_id = self.next_call_id(name_or_target)
            await self.bus.services[service].call(
                function, body, call_id=call_id, headers=headers, user=self.user
            )
            return call_id
        wire.event_topic(name_or_target)  # the same name rules as on the broker
        event_id = self.next_call_id(f"event:{name_or_target}")
        event = SentEvent(name_or_target, body, dict(headers or {}), self.user.user_id, event_id)
        self.bus.events.append(event)
        for handler in list(self.bus.subscribers.get(name_or_target, ())):
            await handler(event)
        return event_id

    async def subscribe(self, name: str, handler: EventHandler) -> Callable[[], None]:
        """Deliver every later event named ``name`` to ``handler``; returns the unsubscribe function."""
        self.bus.subscribers[name].append(handler)
        return lambda: self.bus.subscribers[name].remove(handler)

    async def receive(self, name: str, timeout: float) -> SentEvent:
        """The next event named ``name`` sent after this call began to wait."""
        got: asyncio.Future[SentEvent] = asyncio.get_running_loop().create_future()

        async def take(event: SentEvent) -> None:
            if not got.done():
                got.set_result(event)

        unsubscribe = await self.subscribe(name, take)
        try:
            return await asyncio.wait_for(got, timeout)
        except builtins.TimeoutError as exc:
            raise TimeoutError(f"no event {name!r} within {timeout:g}s") from exc
        finally:
            unsubscribe()

    async def send_binary(self, name: str, data: bytes, *, chunk_size: int = 65536) -> str:
        """Kept as the chunks a broker would carry; ``receive_binary`` joins them in order."""
        if chunk_size < 1:
            raise ValidationError("chunk_size must be at least 1 byte")
        transfer_id = hashlib.sha256(self.next_call_id(f"binary:{name}").encode()).hexdigest()[:32]
        chunks = [bytes(data[i : i + chunk_size]) for i in range(0, len(data), chunk_size)] or [b""]
        self.bus.transfers[name].append(chunks)
        return transfer_id

    async def receive_binary(self, name: str, timeout: float = 0.0) -> bytes:
        """The oldest transfer named ``name``, waiting up to ``timeout`` seconds for one to be sent."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not self.bus.transfers.get(name):
            if asyncio.get_running_loop().time() >= deadline:
                raise TimeoutError(f"no binary transfer {name!r} within {timeout:g}s")
            await asyncio.sleep(0.01)
        return b"".join(self.bus.transfers[name].pop(0))
