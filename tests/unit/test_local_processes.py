"""Child-process plumbing: the service user, directory permissions, stopping and killing children."""

from __future__ import annotations

import os
import signal
import stat
import sys
from pathlib import Path

import pytest

from dormant_local import live_children, processes
from dormant_local.ports import wait_until
from dormant_local.processes import ChildProcess, ServiceUser, make_traversable, service_user


def test_no_service_user_when_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert service_user() is None


def test_service_user_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv(processes.SERVICE_USER_ENV, "nobody")
    found = service_user()
    assert isinstance(found, ServiceUser)
    assert found.name == "nobody"
    monkeypatch.setenv(processes.SERVICE_USER_ENV, "no-such-user-dormant")
    with pytest.raises(RuntimeError, match="names no user"):
        service_user()


def test_make_traversable_adds_only_search_permission(tmp_path: Path) -> None:
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    (tmp_path / "a").chmod(0o700)
    make_traversable(inner)
    mode = stat.S_IMODE((tmp_path / "a").stat().st_mode)
    assert mode == 0o701


def _sleeper(tmp_path: Path, stop_signal: signal.Signals = signal.SIGTERM) -> ChildProcess:
    return ChildProcess(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        name="sleeper",
        log_file=tmp_path / "sleeper.log",
        stop_signal=stop_signal,
    )


async def test_stop_and_kill(tmp_path: Path) -> None:
    child = _sleeper(tmp_path)
    child.spawn()
    assert child.running and child in live_children()
    assert os.getpgid(child.pid or 0) == child.pid
    await child.stop()
    assert not child.running and child not in live_children()
    assert child.returncode == -signal.SIGTERM

    child.spawn()
    child.kill()
    assert child.returncode == -signal.SIGKILL
    assert child not in live_children()


async def test_stop_kills_a_child_that_ignores_its_signal(tmp_path: Path) -> None:
    marker = tmp_path / "ignoring"
    script = (
        "import pathlib, signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
    )
    child = ChildProcess(
        [sys.executable, "-c", script, str(marker)], name="stubborn", log_file=None, stop_signal=signal.SIGINT
    )
    child.spawn()
    await wait_until(marker.exists, within=10)
    await child.stop(grace=0.3)
    assert child.returncode == -signal.SIGKILL


def test_spawning_twice_is_refused(tmp_path: Path) -> None:
    child = _sleeper(tmp_path)
    child.spawn()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            child.spawn()
    finally:
        child.kill()
