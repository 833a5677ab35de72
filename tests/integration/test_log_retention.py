"""The active controller enforces the function log retention (``DORMANT_LOG_RETENTION_S``), and
``dormant controller`` refuses a retention it cannot use."""

from __future__ import annotations

import asyncio
import datetime
import os
import subprocess
import sys

import pytest

from dormant_catalog import open_catalog
from dormant_catalog.function_logs import LogFilter, NewLog, insert_logs, query_logs
from dormant_controller import Controller
from dormant_local import MosquittoProcess


def entry(message: str, at: datetime.datetime) -> NewLog:
    return NewLog("svc", 1, at, 20, None, {"timestamp": at.isoformat(), "level": "INFO", "message": message})


async def test_the_controller_purges_records_past_the_retention(
    broker: MosquittoProcess, catalog_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DORMANT_LOG_RETENTION_S", "3600")
    catalog = await open_catalog(catalog_url)
    now = datetime.datetime.now(datetime.UTC)
    try:
        await catalog.db.run(
            insert_logs, [entry("two hours old", now - datetime.timedelta(hours=2)), entry("fresh", now)]
        )
        controller = Controller(catalog_url, broker.url, tick_s=0.1)
        stop = asyncio.Event()
        task = asyncio.create_task(controller.run(stop))
        try:
            async with asyncio.timeout(60):
                while True:
                    rows = await catalog.db.run(query_logs, LogFilter("svc"))
                    if [r.record["message"] for r in rows] == ["fresh"]:
                        break
                    await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
    finally:
        await catalog.close()


def test_an_unusable_retention_is_refused(catalog_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "dormant_cli", "controller", "--catalog-url", catalog_url],
        env={**os.environ, "DORMANT_LOG_RETENTION_S": "a week"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "DORMANT_LOG_RETENTION_S must be a number of seconds" in done.stderr
