"""``dormant.testing.TestClient`` and the service loader under it (``dormant._loader``).

The client runs calls through the runtime's own dispatcher; these tests check what a test author relies
on: typed errors, the context a handler sees, transactions, and several services in one process, even
services whose modules have the same names (each service's ``generated`` used to be one top-level
package, so the second service loaded got the first one's models and handler).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from dormant import (
    ANONYMOUS,
    BusinessLogicError,
    Context,
    NotFound,
    SystemError,
    TimeoutError,
    UserContext,
    ValidationError,
    errors,
)
from dormant import _loader as loader
from dormant.app import FunctionSpec, ServiceSpec
from dormant.testing import TEST_USER, LoadError, MemoryMessaging, TestClient, TestPlatform

ROOT = Path(__file__).resolve().parents[2]
USER_SERVICE = ROOT / "examples" / "user-service"
PROBE_SERVICE = ROOT / "tests" / "fixtures" / "services" / "probe-service"
LEDGER_SERVICE = ROOT / "tests" / "fixtures" / "services" / "ledger-service"


_PLAIN_SERVICE_NAMES = frozenset({"generated", "service", "probe", "ledger", "handlers"})


@pytest.fixture(autouse=True)
def fresh_imports() -> Iterator[None]:
    """Every test loads services into a clean import state, and leaves none behind."""
    modules = dict(sys.modules)
    meta_path = list(sys.meta_path)
    finders = dict(loader._FINDERS)
    path = list(sys.path)
    # Start clean too: services loaded by earlier tests in this process leave their plain names
    # (``generated``, ``service``) and their finders behind, which these tests must not see.
    for name in list(sys.modules):
        if name.split(".")[0] in _PLAIN_SERVICE_NAMES or name.startswith(loader.PACKAGE_PREFIX):
            del sys.modules[name]
    for finder in loader._FINDERS.values():
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
    loader._FINDERS.clear()
    yield
    for name in set(sys.modules) - set(modules):
        del sys.modules[name]
    sys.modules.update(modules)
    sys.meta_path[:] = meta_path
    loader._FINDERS.clear()
    loader._FINDERS.update(finders)
    sys.path[:] = path


def _copy_user_service(tmp_path: Path, origin: str) -> Path:
    """A copy of the example user-service whose handler and models say which copy they are."""
    target = tmp_path / origin / "user-service"
    shutil.copytree(USER_SERVICE, target, ignore=shutil.ignore_patterns("__pycache__"))
    models = target / "generated" / "models.py"
    models.write_text(models.read_text() + f"\n\nORIGIN = {origin!r}\n")
    service = target / "service.py"
    source = service.read_text()
    source = source.replace(
        "from generated.models import",
        "from generated import models as _models\nfrom generated.models import",
    )
    source = source.replace('"id": uuid.uuid4().hex,', '"id": f"{_models.ORIGIN}-{uuid.uuid4().hex}",')
    assert "_models.ORIGIN" in source
    service.write_text(source)
    return target


# --------------------------------------------------------------------------- several services, one process


async def test_the_example_and_the_fixture_services_run_side_by_side() -> None:
    async with (
        TestClient(USER_SERVICE) as users,
        TestClient(PROBE_SERVICE) as probe,
        TestClient(LEDGER_SERVICE) as ledger,
    ):
        created = await users.call("createUser", {"email": "Ann@Example.com", "name": "Ann"})
        user = await users.call("getUser", {"userId": created["userId"]})
        assert user["email"] == "ann@example.com" and user["name"] == "Ann"
        echoed = await probe.call("echo", {"text": "hi"})
        assert echoed["text"] == "hi" and echoed["version"] == 1
        assert (await ledger.call("record", {"item": "x"}))["item"] == "x"  # ctx.data, in memory

        # Each service has its own generated models, and its handler uses those very classes.
        models = {users.models, probe.models, ledger.models}
        assert len(models) == 3
        assert users.models.__name__ == "dormant_app_user_service.generated.models"
        assert probe.app is not None
        assert probe.app.module("probe").EchoRequest is probe.spec.functions["echo"].input_model
        assert users.spec.functions["createUser"].input_model is users.models.CreateUserRequest


async def test_services_whose_modules_share_names_keep_their_own(tmp_path: Path) -> None:
    """Two services, each with a top-level ``service`` module and a ``generated`` package."""
    a, b = _copy_user_service(tmp_path, "a"), _copy_user_service(tmp_path, "b")
    async with TestClient(a) as first, TestClient(b) as second:
        assert first.models.ORIGIN == "a" and second.models.ORIGIN == "b"
        assert first.spec.handler_class is not second.spec.handler_class
        made_a = await first.call("createUser", {"email": "ann@example.com", "name": "Ann"})
        made_b = await second.call("createUser", {"email": "ann@example.com", "name": "Ann"})
        assert made_a["userId"].startswith("a-") and made_b["userId"].startswith("b-")
        # Handler state is per service: b has no user a created, and a refuses a second Ann.
        with pytest.raises(NotFound):
            await second.call("getUser", {"userId": made_a["userId"]})
        with pytest.raises(BusinessLogicError, match="already exists"):
            await first.call("createUser", {"email": "ann@example.com", "name": "Ann"})


async def test_the_runtime_loader_keeps_two_services_apart(tmp_path: Path) -> None:
    from dormant.context import UserContext
    from dormant.wire import Call
    from dormant_runtime.dispatcher import Dispatcher
    from dormant_runtime.loader import load_service

    a, b = _copy_user_service(tmp_path, "a"), _copy_user_service(tmp_path, "b")
    specs = [load_service(a), load_service(b)]
    assert specs[0].handler_class is not specs[1].handler_class
    for spec, origin in zip(specs, "ab", strict=True):
        call = Call(
            service=spec.name,
            function="createUser",
            version=1,
            call_id="c1",
            params={"email": "ann@example.com", "name": "Ann"},
        )
        dispatcher = Dispatcher(spec, 1, platform=TestPlatform())
        ok, body = await dispatcher.dispatch(call, UserContext(user_id="ann"))
        assert ok and body["userId"].startswith(f"{origin}-")
    # Loading again returns the modules of the first load.
    assert load_service(a) is specs[0]


def test_the_author_imports_resolve_to_the_service_loaded_last(tmp_path: Path) -> None:
    a, b = _copy_user_service(tmp_path, "a"), _copy_user_service(tmp_path, "b")
    loader.load_app(a)
    loader.load_app(b)
    assert importlib.import_module("generated.models").ORIGIN == "b"
    loader.load_app(a)
    assert importlib.import_module("generated.models").ORIGIN == "a"
    assert importlib.import_module("service").__name__ == "dormant_app_user_service.service"


async def test_a_handler_class_imported_the_plain_way_is_adopted(tmp_path: Path) -> None:
    a = _copy_user_service(tmp_path, "a")
    sys.path.insert(0, str(a))
    service_module = importlib.import_module("service")
    plain_models = importlib.import_module("generated.models")
    async with TestClient(service_module.UserService) as client:
        assert client.spec.handler_class is service_module.UserService
        assert client.models is plain_models  # not a second copy of the same classes
        made = await client.call("createUser", {"email": "ann@example.com", "name": "Ann"})
        assert made["userId"].startswith("a-")


async def test_another_services_plain_imports_give_way(tmp_path: Path) -> None:
    a, b = _copy_user_service(tmp_path, "a"), _copy_user_service(tmp_path, "b")
    sys.path.insert(0, str(a))
    assert importlib.import_module("generated.models").ORIGIN == "a"  # a, imported the plain way
    importlib.import_module("service")
    async with TestClient(b) as client:
        assert client.models.ORIGIN == "b"
        made = await client.call("createUser", {"email": "ann@example.com", "name": "Ann"})
        assert made["userId"].startswith("b-")


def test_a_module_of_no_service_keeps_its_name_and_the_shadowing_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "helpers_for_dormant_tests.py").write_text("WHO = 'elsewhere'\n")
    sys.path.insert(0, str(elsewhere))
    theirs = importlib.import_module("helpers_for_dormant_tests")
    service = _copy_user_service(tmp_path, "a")
    (service / "helpers_for_dormant_tests.py").write_text("WHO = 'service'\n")
    with caplog.at_level(logging.WARNING, logger="dormant.load"):
        TestClient(service)
    assert sys.modules["helpers_for_dormant_tests"] is theirs
    assert "helpers_for_dormant_tests" in caplog.text and "shadowed" in caplog.text


async def test_a_handler_instance_is_used_as_given() -> None:
    probe = TestClient(PROBE_SERVICE)  # loads the module the instance's class comes from
    assert probe.app is not None
    users_module = TestClient(USER_SERVICE).app
    assert users_module is not None
    # Fakes go in through the constructor, as in the seed's UserService(IDataStore, IMessaging).
    platform = TestPlatform()
    data = platform.memory.datastore(TEST_USER, "user-service")
    messaging = MemoryMessaging(platform.bus, TEST_USER, "parent-call")
    handler = users_module.module("service").UserService(data, messaging)
    async with TestClient(handler, platform=platform) as client:
        created = await client.call("createUser", {"email": "bo@example.com", "name": "Bo"})
        assert client.handler is handler
        assert (await data.get_by_id("users", created["userId"]) or {}).get("name") == "Bo"
    [event] = platform.bus.events_named("notifications")
    assert (
        event.body == {"type": "user_created", "userId": created["userId"]} and event.user_id == "test-user"
    )


def test_a_service_that_does_not_import_fails_to_load_with_the_reason(tmp_path: Path) -> None:
    broken = _copy_user_service(tmp_path, "a")
    service = broken / "service.py"
    service.write_text(
        service.read_text().replace(
            "import uuid\n", "import uuid\n\nimport no_such_package_for_dormant_tests\n"
        )
    )
    with pytest.raises(LoadError, match=r"ModuleNotFoundError.*no_such_package_for_dormant_tests"):
        TestClient(broken)
    with pytest.raises(LoadError, match=r"generated/dispatch\.py"):
        TestClient(tmp_path)


def test_what_is_not_a_service_is_refused() -> None:
    with pytest.raises(TypeError, match="@service"):
        TestClient(object())


# --------------------------------------------------------------------------- the runtime's behaviour


class Probe(BaseModel):
    text: str = ""


class Seen(BaseModel):
    callId: str
    version: int | None
    user: str | None
    headers: dict[str, str]
    remaining: float | None
    loggerCallId: str


PROBE_SCHEMA = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 5}}}
SEEN_SCHEMA = {
    "type": "object",
    "properties": {
        "callId": {"type": "string"},
        "version": {"type": ["integer", "null"]},
        "user": {"type": ["string", "null"]},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "remaining": {"type": ["number", "null"]},
        "loggerCallId": {"type": "string"},
    },
    "required": ["callId", "headers"],
}
ANY_SCHEMA: dict[str, Any] = {}


class Handlers:
    async def seen(self, request: Probe, ctx: Context) -> Seen:
        return Seen(
            callId=ctx.call_id,
            version=ctx.version,
            user=ctx.user.user_id,
            headers=ctx.headers,
            remaining=ctx.remaining(),
            loggerCallId=str(ctx.logger.extra["call_id"] if ctx.logger.extra else ""),
        )

    async def not_json(self, request: Probe, ctx: Context) -> Any:
        return {"values": {1, 2}}

    async def configured(self, request: Probe, ctx: Context) -> Any:
        return dict(ctx.config)

    async def odd_details(self, request: Probe, ctx: Context) -> Probe:
        raise BusinessLogicError("with details that are not JSON", {"when": object()})

    async def forever(self, request: Probe, ctx: Context) -> Probe:
        await asyncio.Event().wait()
        return request


def _fn(name: str, output: type[BaseModel] = Probe, schema: dict[str, Any] = PROBE_SCHEMA) -> FunctionSpec:
    return FunctionSpec(name, name, Probe, output, PROBE_SCHEMA, schema, 30.0)


SPEC = ServiceSpec(
    "handlers",
    Handlers,
    "sha256:test",
    {
        "seen": _fn("seen", Seen, SEEN_SCHEMA),
        "not_json": _fn("not_json", schema=ANY_SCHEMA),
        "configured": _fn("configured", schema=ANY_SCHEMA),
        "odd_details": _fn("odd_details"),
        "forever": _fn("forever"),
    },
)


async def test_the_handler_sees_the_context_a_pod_gives_it() -> None:
    ann = UserContext(user_id="ann", roles=("admin",))
    async with TestClient(SPEC, version=3, user=ann, headers={"traceparent": "t"}) as client:
        first = await client.call("seen")
        second = await client.call(
            "seen", {"text": "x"}, call_id="mine", headers={"x-extra": "1"}, timeout=60
        )
    assert first["callId"] != second["callId"] and len(first["callId"]) == 32  # fresh per call
    assert first["loggerCallId"] == first["callId"]
    assert (first["version"], first["user"], first["headers"]) == (3, "ann", {"traceparent": "t"})
    assert first["remaining"] is None  # no timeout, no deadline
    assert second["callId"] == "mine" and second["loggerCallId"] == "mine"
    assert second["headers"] == {"traceparent": "t", "x-extra": "1"}
    assert 59 < second["remaining"] <= 60


async def test_the_live_configuration_is_what_handlers_read_and_changes_between_calls() -> None:
    async with TestClient(SPEC, config={"flag": True, "rate": {"max": 3}}) as client:
        assert await client.call("configured") == {"flag": True, "rate": {"max": 3}}
        client.config = {"flag": False}
        assert await client.call("configured") == {"flag": False}
        with pytest.raises(TypeError, match="JSON"):
            client.config = {"when": object()}
        assert dict(client.config) == {"flag": False}  # a refused change leaves the last one
        with pytest.raises(TypeError):
            client.config["flag"] = True  # type: ignore[index]  # read-only, as in a pod
    async with TestClient(SPEC) as client:
        assert await client.call("configured") == {}


async def test_errors_are_the_typed_errors_a_caller_gets() -> None:
    async with TestClient(USER_SERVICE) as client:
        with pytest.raises(ValidationError) as invalid:
            await client.call("createUser", {"email": "not-an-email", "name": "Ann"})
        assert invalid.value.details["errors"][0]["path"] == "email"
        with pytest.raises(ValidationError, match="name"):
            await client.call("createUser", {"email": "ann@example.com", "name": "x" * 101})
        with pytest.raises(NotFound, match="no function 'nope'"):
            await client.call("nope", {})
        with pytest.raises(NotFound) as missing:
            await client.call("getUser", {"userId": "u-404"})
        assert missing.value.details == {"userId": "u-404"}


async def test_a_crash_is_a_system_error_caused_by_the_handlers_exception() -> None:
    async with TestClient(PROBE_SERVICE) as client:
        with pytest.raises(SystemError) as crashed:
            await client.call("explode", {})
    assert "hunter2" not in str(crashed.value)  # what a caller sees
    assert isinstance(crashed.value.__cause__, RuntimeError)  # what the test report shows
    assert "hunter2" in str(crashed.value.__cause__)


async def test_inputs_can_be_models_and_go_through_json() -> None:
    async with TestClient(USER_SERVICE) as client:
        request = client.models.CreateUserRequest(email="cy@example.com", name="Cy")
        created = await client.call("createUser", request)
        assert set(created) == {"userId"}
        with pytest.raises(TypeError):
            await client.call("createUser", {"email": object(), "name": "Cy"})


async def test_the_deadline_cuts_a_running_call() -> None:
    async with TestClient(PROBE_SERVICE, timeout=0.2) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.call("sleep", {"ms": 60000})
        assert time.monotonic() - started < 5  # the deadline, not the function's 5 s timeout
    async with TestClient(SPEC) as client:
        with pytest.raises(TimeoutError, match="before it started"):
            await client.call("forever", {}, timeout=-1)


async def test_output_that_is_not_json_is_a_system_error() -> None:
    async with TestClient(SPEC) as client:
        with pytest.raises(SystemError, match="not JSON"):
            await client.call("not_json")


async def test_error_details_that_are_not_json_are_left_out() -> None:
    async with TestClient(SPEC) as client:
        with pytest.raises(BusinessLogicError) as refused:
            await client.call("odd_details")
    assert refused.value.details is None and refused.value.message == "with details that are not JSON"


# --------------------------------------------------------------------------- the platform in process


def _user(name: str, *roles: str) -> UserContext:
    return UserContext(user_id=name, email=f"{name}@example.com", roles=roles)


async def test_each_caller_sees_only_its_own_records_until_granted() -> None:
    platform = TestPlatform()
    async with TestClient(USER_SERVICE, platform=platform, user=_user("alice")) as users:
        created = await users.call("createUser", {"email": "ann@example.com", "name": "Ann"})
        with pytest.raises(NotFound):
            await users.call("getUser", created, user=_user("bob"))
        with pytest.raises(errors.Forbidden):
            await users.call("grantRead", {"user": "bob"}, user=_user("bob"))
        assert await users.call("grantRead", {"user": "bob"}, user=_user("root", "admin")) == {
            "granted": True
        }
        assert (await users.call("getUser", created, user=_user("bob")))["name"] == "Ann"
        with pytest.raises(errors.Unauthenticated):
            await users.call("getUser", created, user=ANONYMOUS)
    actions = [(record.actor, record.action) for record in platform.memory.audit]
    assert ("bob", "get") in actions and ("alice", "insert") in actions
    [event] = platform.bus.events_named("notifications")
    assert event.body == {"type": "user_created", "userId": created["userId"]} and event.user_id == "alice"


async def test_the_ledger_writes_through_ctx_data_in_process() -> None:
    platform = TestPlatform()
    async with TestClient(LEDGER_SERVICE, platform=platform) as ledger:
        recorded = await ledger.call("record", {"item": "pen"}, call_id="ledger-1")
    assert recorded["item"] == "pen"
    found = await platform.memory.datastore(ANONYMOUS, "ledger-service").query("effects")
    assert [(d["callId"], d["item"]) for d in found.items] == [("ledger-1", "pen")]


# --------------------------------------------------------------------------- synchronous use


def test_call_sync_from_synchronous_code() -> None:
    with TestClient(USER_SERVICE) as client:
        created = client.call_sync("createUser", {"email": "di@example.com", "name": "Di"})
        assert client.call_sync("getUser", created)["name"] == "Di"
        with pytest.raises(NotFound):
            client.call_sync("getUser", {"userId": "nobody"})
    assert client._runner is None  # closed on exit


async def test_call_sync_refuses_to_run_inside_an_event_loop() -> None:
    with TestClient(USER_SERVICE) as client, pytest.raises(RuntimeError, match=r"await client\.call"):
        client.call_sync("getUser", {"userId": "u"})
