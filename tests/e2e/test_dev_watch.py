"""``dormant dev`` as a developer lives in it: ``--watch`` puts a saved handler edit live, keeps the
serving version through a schema that does not build, and stops cleanly; a restart on the same state
publishes nothing new and leaves whatever is live alone.

Both run ``dormant dev`` as a subprocess on a service made by ``dormant init``, on a private broker and
a fresh catalog database (so no Postgres is created here: ``tests/e2e/test_cli.py`` covers that).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dormant.client import Client
from dormant.errors import DormantError
from dormant_catalog import open_catalog
from dormant_cli import main
from dormant_cli.build_cmds import publish
from dormant_cli.deploy_cmd import deploy
from dormant_local import MosquittoProcess

from .mesh import child_env
from .test_cli import _alive, _descendants

pytestmark = pytest.mark.slow

READY_TIMEOUT_S = 120.0
CHANGE_TIMEOUT_S = 60.0
GREETING = 'f"Hello, {request.name}!"'


class Dev:
    """A ``dormant dev`` subprocess with its stdout and stderr in files."""

    def __init__(self, tmp: Path, service_dir: Path, broker_url: str, catalog_url: str, *extra: str) -> None:
        self.state = tmp / "state"
        runs = len(list(tmp.glob("dev-*.err")))
        self.out_file = tmp / f"dev-{runs}.out"
        self.err_file = tmp / f"dev-{runs}.err"
        with self.out_file.open("wb") as out, self.err_file.open("wb") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dormant_cli",
                    "dev",
                    str(service_dir),
                    "--pods",
                    "1",
                    "--state-dir",
                    str(self.state),
                    "--broker-url",
                    broker_url,
                    "--catalog-url",
                    catalog_url,
                    "--lease",
                    "3",
                    *extra,
                ],
                env=child_env(),
                cwd=tmp,
                stdout=out,
                stderr=err,
            )
        self.children: list[int] = []

    @property
    def bearer(self) -> str:
        """The developer token this dev mesh made (its file is mode 0600 in the state directory)."""
        return "Bearer " + (self.state / "dev-token").read_text().strip()

    @property
    def err(self) -> str:
        return self.err_file.read_text(errors="replace")

    async def ready(self) -> None:
        end = time.monotonic() + READY_TIMEOUT_S
        while "ready" not in self.out_file.read_text():
            if self.process.poll() is not None:
                raise AssertionError(f"dormant dev exited with {self.process.returncode}:\n{self.err}")
            if time.monotonic() > end:
                raise AssertionError(f"dormant dev not ready after {READY_TIMEOUT_S:g} s:\n{self.err}")
            await asyncio.sleep(0.1)
        self.children = _descendants(self.process.pid)

    async def wait_for_output(self, text: str) -> None:
        end = time.monotonic() + CHANGE_TIMEOUT_S
        while text not in self.err:
            assert time.monotonic() < end, f"no {text!r} from dormant dev:\n{self.err}"
            await asyncio.sleep(0.1)

    def stop(self) -> int:
        """SIGINT, as Ctrl-C; the exit status, once every child is gone."""
        if self.process.poll() is None:
            self.children = sorted({*self.children, *_descendants(self.process.pid)})
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        end = time.monotonic() + 10
        while [pid for pid in self.children if _alive(pid)] and time.monotonic() < end:
            time.sleep(0.1)
        return code


@pytest.fixture
def service_dir(tmp_path: Path) -> Path:
    target = tmp_path / "hello"
    assert main(["init", "hello-service", "--dir", str(target)]) == 0
    return target


@pytest.fixture
def dev_runs(tmp_path: Path) -> Iterator[list[Dev]]:
    runs: list[Dev] = []
    yield runs
    for run in runs:  # a failed test still stops what it started
        if run.process.poll() is None:
            run.stop()


async def _greeting(client: Client) -> str:
    answer = await client.call("hello-service", "hello", {"name": "Ann"}, timeout=5)
    return str(answer["message"])


async def _until_greeting(client: Client, expected: str) -> None:
    """Call until the answer is ``expected`` (calls during a switch may fail or answer the old way)."""
    end = time.monotonic() + CHANGE_TIMEOUT_S
    last: object = None
    while time.monotonic() < end:
        try:
            last = await _greeting(client)
        except DormantError as exc:
            last = exc
        if last == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"still {last!r} after {CHANGE_TIMEOUT_S:g} s, not {expected!r}")


async def test_watch_serves_a_saved_edit_and_keeps_serving_through_a_bad_schema(
    tmp_path: Path,
    service_dir: Path,
    fresh_broker: MosquittoProcess,
    catalog_url: str,
    dev_runs: list[Dev],
) -> None:
    dev = Dev(tmp_path, service_dir, fresh_broker.url, catalog_url, "--watch")
    dev_runs.append(dev)
    await dev.ready()
    assert len(dev.children) >= 4  # pod, its runtimes, gateway, controller
    async with Client(fresh_broker.url, authorization=dev.bearer) as client:
        assert await _greeting(client) == "Hello, Ann!"
        await dev.wait_for_output("watching ")

        handler = service_dir / "service.py"
        handler.write_text(handler.read_text().replace(GREETING, 'f"Howdy, {request.name}!"'))
        await _until_greeting(client, "Howdy, Ann!")
        await dev.wait_for_output("hello-service v2 serving")

        schema = service_dir / "schemas" / "hello.json"
        schema.write_text(
            schema.read_text().replace('"type": "string", "minLength"', '"tyep": "string", "minLength"')
        )
        await dev.wait_for_output("not deployed: the change does not build; hello-service v2 keeps serving")
        assert "schemas/hello.json:5:" in dev.err and "unknown schema keyword 'tyep'" in dev.err
        assert await _greeting(client) == "Howdy, Ann!"

        # A breaking change (a tighter bound) needs approval to go live; on the dev mesh saving it is
        # the approval, in the developer's name and said so.
        schema.write_text(
            schema.read_text()
            .replace('"tyep": "string", "minLength"', '"type": "string", "minLength"')
            .replace('"maxLength": 100', '"maxLength": 50')
        )
        await dev.wait_for_output("hello-service v3 serving")
        assert "maxLength: BOUND_TIGHTENED): approved on this dev mesh" in dev.err
        assert await _greeting(client) == "Howdy, Ann!"

    async with await open_catalog(catalog_url) as catalog:
        assert [v.version for v in await catalog.list_versions("hello-service")] == [1, 2, 3]
        record = await catalog.get_compatibility("hello-service", 3)
        assert record is not None and record.breaking and record.approved_by == "dev"
    assert dev.stop() == 0
    assert [pid for pid in dev.children if _alive(pid)] == []
    assert "Traceback" not in dev.err


async def test_a_restart_publishes_nothing_and_leaves_the_live_version_alone(
    tmp_path: Path,
    service_dir: Path,
    fresh_broker: MosquittoProcess,
    catalog_url: str,
    dev_runs: list[Dev],
) -> None:
    first = Dev(tmp_path, service_dir, fresh_broker.url, catalog_url)
    dev_runs.append(first)
    await first.ready()
    assert "published hello-service v1" in first.err
    assert first.stop() == 0

    # While dev is down, someone publishes and deploys v2 (a changed copy of the service).
    changed = tmp_path / "changed"
    assert main(["init", "hello-service", "--dir", str(changed)]) == 0
    handler = changed / "service.py"
    handler.write_text(handler.read_text().replace(GREETING, 'f"Bonjour, {request.name}!"'))
    assert await publish(changed, catalog_url, first.state / "layers", actor="test") == ("hello-service", 2)
    await deploy(catalog_url, "hello-service", 2, 1)

    second = Dev(tmp_path, service_dir, fresh_broker.url, catalog_url)
    dev_runs.append(second)
    await second.ready()
    assert "hello-service v1 has this code already; not publishing" in second.err
    assert "hello-service v2 already live; not redeploying" in second.err
    async with Client(fresh_broker.url, authorization=second.bearer) as client:
        assert await _greeting(client) == "Bonjour, Ann!"
    async with await open_catalog(catalog_url) as catalog:
        assert [v.version for v in await catalog.list_versions("hello-service")] == [1, 2]
        deploys = [
            a.detail["version"] for a in await catalog.list_audit("hello-service") if a.action == "deploy"
        ]
        assert deploys == [1, 2]
    assert second.stop() == 0
