"""Constructor injection, as in the seed's ``UserService(IDataStore dataStore, IMessaging messaging)``.

A handler class may take the platform interfaces in its constructor::

    @service("user-service")
    class UserService:
        def __init__(self, data: DataStore, messaging: Messaging) -> None: ...

The handler instance lives as long as the runtime, but each interface must act as the caller of the
call being served. So the constructor gets a proxy per interface, and each use of a proxy resolves to
``ctx.data`` / ``ctx.authorizer`` / ``ctx.messaging`` of the current call, found in a context variable
that the dispatcher sets around the handler (asyncio copies it into tasks the handler starts). The cost
is one context-variable read and one attribute lookup per use (about 0.1 µs); ``ctx.data`` and friends
are the same objects without the proxy, for code that prefers them.

Parameters are matched by their annotation's name (``DataStore``, ``Authorizer``, ``Messaging``), so
``from __future__ import annotations`` and imports under ``TYPE_CHECKING`` work. Any other constructor
parameter must have a default.
"""

from __future__ import annotations

import contextvars
import inspect
from typing import TYPE_CHECKING, Any

from .errors import SystemError

if TYPE_CHECKING:
    from .context import Context

_current: contextvars.ContextVar[Context] = contextvars.ContextVar("dormant_current_call")

INJECTABLE = {"DataStore": "data", "Authorizer": "authorizer", "Messaging": "messaging"}
"""Annotation name → the ``Context`` property the proxy resolves to."""


def enter(ctx: Context) -> contextvars.Token[Context]:
    return _current.set(ctx)


def leave(token: contextvars.Token[Context]) -> None:
    _current.reset(token)


class _CallerBound:
    """Resolves every attribute on the current call's interface (``ctx.<property>``)."""

    __slots__ = ("_property",)

    def __init__(self, prop: str) -> None:
        self._property = prop

    def __getattr__(self, name: str) -> Any:
        try:
            ctx = _current.get()
        except LookupError:
            raise SystemError(
                f"the injected {self._property} is bound to a call: use it inside a handler"
            ) from None
        return getattr(getattr(ctx, self._property), name)

    def __repr__(self) -> str:
        return f"<{self._property} of the current call>"


def _annotation_name(annotation: Any) -> str | None:
    if isinstance(annotation, str):
        return annotation.rsplit(".", 1)[-1].strip()
    return getattr(annotation, "__name__", None)


def construct(handler_class: type[Any]) -> Any:
    """A handler instance, its platform-interface parameters given caller-bound proxies."""
    try:
        parameters = list(inspect.signature(handler_class).parameters.values())
    except (TypeError, ValueError):  # a builtin or C-implemented __init__: nothing to inject
        return handler_class()
    given: dict[str, Any] = {}
    for parameter in parameters:
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        prop = INJECTABLE.get(_annotation_name(parameter.annotation) or "")
        if prop is not None:
            given[parameter.name] = _CallerBound(prop)
        elif parameter.default is parameter.empty:
            raise TypeError(
                f"{handler_class.__name__}.__init__ takes {parameter.name!r}, which Dormant cannot give: "
                f"give it a default, or annotate it with one of {', '.join(INJECTABLE)}"
            )
    return handler_class(**given)
