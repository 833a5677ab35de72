"""A call nobody receives says why (issue 9, item 14): ``NotFound`` for a service, version or function
that does not exist; ``Unavailable`` with the reason (not deployed, starting, failed to start: the
error) otherwise. ``dormant deploy`` exits 1 and prints why when a pod cannot start the version.

A real mesh with the controller (which publishes ``mesh/services/{svc}``), pods and the real runtime.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from dormant import Client, NotFound, Unavailable
from dormant.errors import DormantError
from dormant_local import MosquittoProcess

from .mesh import PROBE, ROOT, Mesh, child_env, clear_retained, copy_service, running_mesh

OK, IDLE, BROKEN = "unserved-ok", "unserved-idle", "unserved-broken"
IMPORT_ERROR = "RuntimeError: boom at import"


def probe_copy(tmp: Path, name: str, *, broken: bool = False) -> Path:
    """The probe service renamed; ``broken`` makes its module raise when a runtime imports it."""
    service = copy_service(PROBE, tmp / name)
    module = service / "probe.py"
    text = module.read_text().replace(
        '@service("probe-service", auth="off")', f'@service("{name}", auth="off")'
    )
    if broken:  # codegen reads the module without running it; the runtime imports it
        text = text.replace("RELEASE = ", 'raise RuntimeError("boom at import")\nRELEASE = ', 1)
    module.write_text(text)
    return service


@pytest_asyncio.fixture
async def mesh(broker: MosquittoProcess, catalog_url: str, tmp_path: Path) -> AsyncIterator[Mesh]:
    with running_mesh(broker.url, catalog_url, tmp_path) as m:
        try:
            yield m
        finally:
            m.stop()
            await clear_retained(broker.url, [OK, IDLE, BROKEN])


async def eventually(
    client: Client, call: Callable[[Client], Awaitable[Any]], expect: type[DormantError], text: str
) -> DormantError:
    """The error ``call`` raises once the controller's state has caught up (bounded)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + 30
    last: object = None
    while loop.time() < end:
        try:
            last = await call(client)
        except DormantError as exc:
            last = exc
            if isinstance(exc, expect) and text in exc.message:
                return exc
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {expect.__name__} with {text!r}, last: {last!r}")


def dormant(*args: str, mesh: Mesh) -> subprocess.CompletedProcess[str]:
    env = child_env(
        DORMANT_BROKER_URL=mesh.broker_url,
        DORMANT_CATALOG_URL=mesh.catalog_url,
        DORMANT_LAYER_STORE=str(mesh.layer_store),
    )
    return subprocess.run(
        [sys.executable, "-m", "dormant_cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        cwd=ROOT,
    )


async def test_each_reason_a_call_reaches_nobody_is_told_apart(mesh: Mesh, tmp_path: Path) -> None:
    _, ok_v1 = await mesh.publish(probe_copy(tmp_path / "a", OK))
    await mesh.deploy(OK, ok_v1)
    await mesh.publish(probe_copy(tmp_path / "b", IDLE))  # published, never deployed
    mesh.start_pod("pod-ok")
    await mesh.wait_serving(OK)
    ok_v2 = (await mesh.publish(probe_copy(tmp_path / "c", OK, broken=True), import_check=False))[
        1
    ]  # not deployed
    mesh.start_controller()
    async with Client(mesh.broker_url, timeout=5) as client:
        # The controller publishes states: a service the catalog does not have does not exist.
        await eventually(client, lambda c: c.call("no-such-service", "echo", {}), NotFound, "no-such-service")
        # Served: the runtime itself answers an unknown function.
        with pytest.raises(NotFound) as served:
            await client.call(OK, "nothingHere", {})
        assert "noSubscribers" not in (served.value.details or {})
        # The "does not exist" above may come from another controller's marker on this broker before this
        # one publishes OK's state: wait for the state, not for the marker.
        await eventually(
            client, lambda c: c.call(OK, "echo", {"text": "x"}, version=99), NotFound, "has no version 99"
        )
        with pytest.raises(NotFound, match=rf"{OK} v{ok_v2} has no function 'nothingHere'"):
            await client.call(OK, "nothingHere", {}, version=ok_v2)
        with pytest.raises(Unavailable, match=rf"{OK} v{ok_v2} is not deployed"):
            await client.call(OK, "echo", {"text": "x"}, version=ok_v2)
        idle = await eventually(
            client, lambda c: c.call(IDLE, "echo", {"text": "x"}), Unavailable, f"{IDLE} is not deployed"
        )
        assert idle.details["noSubscribers"] is True and idle.details["state"] == "not-deployed"
        with pytest.raises(NotFound, match=rf"{IDLE} v1 has no function 'nope'"):
            await client.call(IDLE, "nope", {})
        assert (await client.call(OK, "echo", {"text": "still"}))["text"] == "still"

    # A version whose module raises at import: the pod cannot start it; deploy says so and fails.
    await mesh.publish(probe_copy(tmp_path / "d", BROKEN, broken=True), import_check=False)
    mesh.start_pod("pod-broken")
    deployed = dormant("deploy", BROKEN, "--wait", "60", mesh=mesh)
    assert deployed.returncode == 1, (deployed.stdout, deployed.stderr)
    assert "failed to start v1" in deployed.stderr and IMPORT_ERROR in deployed.stderr, deployed.stderr
    async with Client(mesh.broker_url, timeout=5) as client:
        broken = await eventually(
            client, lambda c: c.call(BROKEN, "echo", {"text": "x"}), Unavailable, "failed to start v1"
        )
        assert IMPORT_ERROR in broken.message and broken.details["state"] == "failed"
    status = dormant("status", BROKEN, "--listen", "0", mesh=mesh)
    assert status.returncode == 0, status.stderr
    assert "failed to start v1" in status.stdout and IMPORT_ERROR in status.stdout

    # `dormant call` answers from the catalog too, even with no controller running.
    controller = mesh.pods.pop("controller")
    controller.terminate()
    controller.wait(15)
    await clear_retained(mesh.broker_url, [OK, IDLE, BROKEN])
    for target, expected in (
        ("no-such-service.echo", "NotFound: no service named 'no-such-service'"),
        (f"{IDLE}.echo", f"Unavailable: {IDLE}.echo is unavailable: {IDLE} is not deployed"),
        (f"{BROKEN}.echo", "failed to start v1"),
    ):
        called = dormant("call", target, '{"text": "x"}', mesh=mesh)
        assert called.returncode == 1 and expected in called.stderr, (target, called.stderr)


async def test_without_published_states_a_call_nobody_receives_is_unavailable(
    fresh_broker: MosquittoProcess,
) -> None:
    """No controller has ever published states on this broker: a missing state proves nothing."""
    async with Client(fresh_broker.url, timeout=5) as client:
        with pytest.raises(Unavailable, match="is the controller running"):
            await client.call("no-such-service", "echo", {})
