"""``Context`` and ``UserContext``: what a handler knows about the call it is serving."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from .errors import SystemError

if TYPE_CHECKING:  # the interfaces' own modules; messaging pulls in the MQTT client
    from .authorizer import Authorizer
    from .datastore import DataStore
    from .messaging import Messaging


@dataclass(frozen=True, slots=True)
class UserContext:
    """The caller's identity, from the verified bearer token; anonymous where the service's
    authentication is off or optional and the call carried no token.

    ``token`` is the bearer token itself, for calls the function makes on the caller's behalf; it is
    left out of ``repr`` (so out of logs)."""

    user_id: str | None = None
    email: str | None = None
    roles: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    token: str | None = field(default=None, repr=False, compare=False)

    @property
    def anonymous(self) -> bool:
        return self.user_id is None

    def has_role(self, role: str) -> bool:
        return role in self.roles


ANONYMOUS = UserContext()

NO_CONFIG: Mapping[str, Any] = MappingProxyType({})
"""The live configuration of a service that has none set."""


class TransactionSource(Protocol):
    """Where a runtime gets the database transactions it hands to handlers (``Context.transaction``)."""

    async def begin(self) -> Any:
        """A connection with a transaction open (a ``psycopg.AsyncConnection``)."""
        ...


class Platform(Protocol):
    """What a runtime (or ``dormant.testing``) hands handlers: the seed's platform interfaces, each bound
    to the current call's caller (the seed's ``CreateDataStore(UserContext)`` and so on)."""

    def datastore(self, ctx: Context) -> DataStore: ...

    def authorizer(self, ctx: Context) -> Authorizer: ...

    def messaging(self, ctx: Context) -> Messaging: ...


class _CallLogger(logging.LoggerAdapter[logging.Logger]):
    """Prefixes every record with the callId and adds it as ``record.call_id``."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        kwargs["extra"] = {**extra, **kwargs.get("extra", {})}
        return f"[{extra.get('call_id')}] {msg}", kwargs


@dataclass(slots=True)
class Context:
    """Per-call facts handed to every handler next to its input model."""

    call_id: str
    service: str
    function: str
    version: int | None = None
    deadline: float | None = None
    """Absolute deadline, seconds since the epoch, or None when the caller set none."""
    user: UserContext = ANONYMOUS
    headers: dict[str, str] = field(default_factory=dict)
    config: Mapping[str, Any] = field(default_factory=lambda: NO_CONFIG)
    """The service's live configuration (``dormant config set``, ``PUT …/config``) as this call started:
    read-only, JSON values by name. Unlike environment variables it changes without a restart: the
    next call sees a change; one call sees one revision throughout."""
    _logger: logging.LoggerAdapter[logging.Logger] | None = None
    _transactions: TransactionSource | None = None
    _tx: Any = None
    _platform: Platform | None = None
    _bound: dict[str, Any] = field(default_factory=dict)

    async def _transaction(self) -> Any:
        """The call's fenced transaction (a ``psycopg.AsyncConnection``), opened on first use; every use
        in one call gets the same one. Not for handlers: ``ctx.data`` and ``ctx.authorizer`` run on it
        as the caller (row-level security); the runtime commits it with the call's stored answer, only
        while it still owns the call, so their writes happen exactly once per callId.
        """
        if self._tx is None:
            if self._transactions is None:
                raise SystemError("this runtime has no database for the DataStore")
            self._tx = await self._transactions.begin()
        return self._tx

    @property
    def data(self) -> DataStore:
        """The DataStore as this call's caller: row-level security from their token, every access
        audited, writes committed with the call's answer (exactly once per callId)."""
        return self._bind("datastore")  # type: ignore[no-any-return]

    @property
    def authorizer(self) -> Authorizer:
        """Roles and permissions on this service's data, managed as this call's caller."""
        return self._bind("authorizer")  # type: ignore[no-any-return]

    @property
    def messaging(self) -> Messaging:
        """Calls and events to other functions, carrying this call's caller and child callIds."""
        return self._bind("messaging")  # type: ignore[no-any-return]

    def _bind(self, interface: str) -> Any:
        bound = self._bound.get(interface)
        if bound is None:
            if self._platform is None:
                raise SystemError(f"this runtime provides no {interface} to handlers")
            bound = self._bound[interface] = getattr(self._platform, interface)(self)
        return bound

    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or None without a deadline."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.time())

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """A logger whose records carry this call's callId."""
        if self._logger is None:
            base = logging.getLogger(f"dormant.fn.{self.service}.{self.function}")
            # What the runtime's JSON log lines carry (requestId, functionName, function, version).
            extra = {"call_id": self.call_id, "service": self.service, "function": self.function}
            self._logger = _CallLogger(base, {**extra, "version": self.version})
        return self._logger
