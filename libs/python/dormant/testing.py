"""``TestClient``: call a service's functions in process, as a pod runs them, with no broker or database.

Modelled on FastStream's ``TestClient``::

    from dormant.testing import TestClient

    async def test_create_user() -> None:
        async with TestClient("examples/user-service") as client:
            created = await client.call("createUser", {"email": "ann@example.com", "name": "Ann"})
            user = await client.call("getUser", {"userId": created["userId"]})
            assert user["name"] == "Ann"

A call goes through the runtime's own dispatcher (``dormant._dispatch``): the input is checked against
the function's JSON schema (every ``format`` asserted) and built into its model by JSON names, the
handler runs under its timeout and the caller's deadline with a ``Context`` (a fresh callId per call,
headers, ``ctx.user``, ``ctx.logger``), its output becomes JSON and is checked against the output
schema, and every failure is the typed error a ``dormant.Client`` would raise (``ValidationError``,
``NotFound``, ``BusinessLogicError`` …). Inputs and answers go through JSON as on the wire. An
unexpected exception in the handler is a ``SystemError`` whose ``__cause__`` is that exception, so the
test report shows the handler's traceback.

Handlers get the platform interfaces in process (``TestPlatform``): ``ctx.data`` and ``ctx.authorizer``
(or constructor-injected ``DataStore``/``Authorizer``) are ``MemoryDataStore``/``MemoryAuthorizer`` with
the rules row-level security enforces in a pod (each caller sees its own documents unless granted more;
every access audited in ``client.platform.memory.audit``); ``ctx.messaging`` is ``MemoryMessaging``:
calls go to the other ``TestClient``s sharing the platform (as the same caller, with the same child
callIds), events land in ``client.platform.bus.events``. Give several ``TestClient``s one
``TestPlatform`` to let their services call each other and share data, as in one mesh.

Several services load side by side in one test process: each service directory is imported as a
package of its own (``dormant._loader``), so every service keeps its own ``generated`` models.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import time
from collections.abc import Mapping
from types import MappingProxyType, ModuleType, TracebackType
from typing import Any

import orjson

from . import callid
from ._dispatch import Dispatcher
from ._loader import LoadedApp, LoadError, find_service_dir, load_app
from ._memory_messaging import MemoryBus, MemoryMessaging
from ._memory_platform import MemoryAuthorizer, MemoryDataStore, MemoryPlatform
from ._modeljson import request_body
from .app import ServiceSpec
from .context import Context, UserContext
from .decorators import SERVICE_ATTR
from .errors import error_from_payload
from .migrations import declared_migrations

__all__ = [
    "TEST_USER",
    "LoadError",
    "MemoryAuthorizer",
    "MemoryBus",
    "MemoryDataStore",
    "MemoryMessaging",
    "MemoryPlatform",
    "TestClient",
    "TestPlatform",
]

TEST_USER = UserContext(user_id="test-user", email="test-user@example.com")
"""Who calls through a ``TestClient`` unless told otherwise: a verified user with no roles."""



class TestPlatform:
    """``ctx.data``, ``ctx.authorizer`` and ``ctx.messaging`` for ``TestClient`` calls: one in-process
    store (``memory``) and one message bus (``bus``), shared by every ``TestClient`` given this platform."""

    __test__ = False

    def __init__(self, memory: MemoryPlatform | None = None, bus: MemoryBus | None = None) -> None:
        self.memory = memory or MemoryPlatform()
        self.bus = bus or MemoryBus()

    def datastore(self, ctx: Context) -> MemoryDataStore:
        return self.memory.datastore(ctx.user, ctx.service, ctx.call_id)

    def authorizer(self, ctx: Context) -> MemoryAuthorizer:
        return self.memory.authorizer(ctx.user, ctx.service, ctx.call_id)

    def messaging(self, ctx: Context) -> Any:
        return MemoryMessaging(self.bus, ctx.user, ctx.call_id)


class TestClient:
    """Calls the functions of one service in process, with the runtime's validation, context and errors.

    ``service`` is a service directory (or any path inside one, such as a test's ``__file__``), a
    handler class decorated with ``@service`` (its directory is found from its source file), a handler
    instance (used as is: inject fakes through its constructor), or a ``ServiceSpec``.

    ``version`` is what handlers see as ``ctx.version``; ``user`` is ``ctx.user`` (``TEST_USER``, a
    signed-in user with no roles, unless given; pass ``dormant.ANONYMOUS`` for a caller without a token:
    the service's ``auth`` mode and each function's ``roles`` are enforced as in a pod); ``headers`` are sent
    with every call; ``timeout`` (seconds) sets each call's deadline (``ctx.remaining()``; default: none,
    so only the function's own timeout applies); ``platform`` is the ``TestPlatform`` behind ``ctx.data``,
    ``ctx.authorizer`` and ``ctx.messaging`` (a fresh one unless given); ``config`` is the live
configuration handlers read as ``ctx.config`` (assign ``client.config`` to change it between calls, as
``dormant config set`` does on a mesh).

    Use it with ``async with`` and ``await client.call(...)``, or from synchronous code with ``with`` and
    ``client.call_sync(...)`` (which runs the calls on an event loop of the client's own); a handler that
    keeps loop-bound state (an ``asyncio.Lock`` in use) should not see both.
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(
        self,
        service: ServiceSpec | str | os.PathLike[str] | type | object,
        *,
        version: int | None = 1,
        user: UserContext | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        platform: TestPlatform | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        spec, handler, self.app = _resolve(service)
        self.spec: ServiceSpec = spec
        self.user = TEST_USER if user is None else user
        self.headers = dict(headers or {})
        self.timeout = timeout
        self.platform = platform or TestPlatform()
        self.platform.bus.services[spec.name] = self
        # As a runtime does when a version starts: the service's pending collection migrations.
        self.platform.memory.apply_migrations(spec.name, declared_migrations(spec.handler_class))
        self._dispatcher = Dispatcher(spec, version, handler=handler, platform=self.platform)
        self._runner: asyncio.Runner | None = None
        if config is not None:
            self.config = config

    @property
    def config(self) -> Mapping[str, Any]:
        """The live configuration the next call sees as ``ctx.config`` (read-only)."""
        return self._dispatcher.config

    @config.setter
    def config(self, values: Mapping[str, Any]) -> None:
        # Through JSON, as it travels on the mesh: a value a mesh could not carry fails here too.
        try:
            copied = orjson.loads(orjson.dumps(dict(values)))
        except TypeError as exc:
            raise TypeError(f"config values must be JSON: {exc}") from None
        self._dispatcher.config = MappingProxyType(copied)

    @property
    def handler(self) -> Any:
        """The handler instance serving the calls (its state persists across calls, as in a pod)."""
        return self._dispatcher.handler

    @property
    def models(self) -> ModuleType:
        """The service's generated models (``generated.models`` of this service, not of another)."""
        if self.app is None:
            raise LoadError("this TestClient was given a ServiceSpec, not a service directory: no models")
        return self.app.module("generated.models")

    async def call(
        self,
        function: str,
        params: Any = None,
        *,
        call_id: str | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        user: UserContext | None = None,
    ) -> Any:
        """Call ``function`` and return its JSON result, or raise the typed error a caller would get.

        ``params`` is a mapping or a pydantic model (sent by its JSON names, as ``dormant.Client`` does).
        ``call_id`` defaults to a fresh one per call; ``timeout``, ``headers`` and ``user`` override (or,
        for headers, add to) the client's for this call.
        """
        call_id = callid.fresh() if call_id is None else call_id
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.time() + timeout
        # Through JSON, as on the wire: the handler sees what a caller can send, nothing richer.
        params = orjson.loads(orjson.dumps(request_body(params)))
        dispatcher = self._dispatcher
        outcome = await dispatcher.run_call(
            function,
            params,
            call_id=call_id,
            deadline=deadline,
            headers={**self.headers, **(headers or {})},
            user=self.user if user is None else user,
        )
        outcome = await dispatcher.end_call(outcome, function=function, call_id=call_id)
        body = orjson.loads(orjson.dumps(outcome.body))
        if outcome.ok:
            return body
        raise error_from_payload(body) from outcome.cause

    def call_sync(
        self,
        function: str,
        params: Any = None,
        *,
        call_id: str | None = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        user: UserContext | None = None,
    ) -> Any:
        """``call`` for synchronous tests: runs on the client's own event loop (closed by ``close``)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("call_sync cannot run inside an event loop: use `await client.call(...)`")
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(
            self.call(function, params, call_id=call_id, timeout=timeout, headers=headers, user=user)
        )

    def close(self) -> None:
        """Close the event loop ``call_sync`` started, if any."""
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    async def __aenter__(self) -> TestClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __enter__(self) -> TestClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _resolve(service: object) -> tuple[ServiceSpec, Any, LoadedApp | None]:
    """The spec, the handler instance (None: the runtime's ``handler_class()``) and the loaded app."""
    if isinstance(service, ServiceSpec):
        return service, None, None
    if isinstance(service, str | os.PathLike):
        app = load_app(find_service_dir(service))
        return app.spec, None, app
    cls = service if isinstance(service, type) else type(service)
    name = getattr(cls, SERVICE_ATTR, None)
    if not isinstance(name, str):
        raise TypeError(
            f"TestClient takes a service directory, a @service handler class or instance, or a "
            f"ServiceSpec; got {service!r}"
        )
    try:
        source = inspect.getfile(cls)
    except (TypeError, OSError) as exc:
        raise LoadError(f"cannot tell where {cls.__qualname__} is defined: {exc}") from exc
    app = load_app(find_service_dir(os.path.dirname(source)))
    spec = app.spec
    if spec.name != name:
        raise LoadError(f"{cls.__qualname__} is service {name!r}, but {app.directory} is {spec.name!r}")
    if spec.handler_class is not cls:
        # The class came in through another import of its module: serve the calls with it.
        spec = dataclasses.replace(spec, handler_class=cls)
    return spec, None if isinstance(service, type) else service, app
