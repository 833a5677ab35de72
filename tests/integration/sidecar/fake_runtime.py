"""A stand-in runtime that speaks the sidecar control protocol, for sidecar tests.

Every step is appended as a JSON line to ``$FAKE_RUNTIME_LOG``: ``start``, ``load`` (with what the
app layer's ``app.txt`` says), ``failed`` and ``drained``, each with the pid and a timestamp.
An ``app.txt`` starting with ``fail`` makes the load fail; ``$FAKE_RUNTIME_DRAIN_S`` delays draining.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

CONTROL_FD = int(os.environ["DORMANT_CONTROL_FD"])
LOG = os.environ.get("FAKE_RUNTIME_LOG")


def record(event: str, **fields: Any) -> None:
    if LOG:
        line = json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields})
        with open(LOG, "a") as fh:
            fh.write(line + "\n")


def emit(event: str, **fields: Any) -> None:
    os.write(CONTROL_FD, json.dumps({"event": event, **fields}).encode() + b"\n")


def drain(why: str) -> NoReturn:
    time.sleep(float(os.environ.get("FAKE_RUNTIME_DRAIN_S", "0")))
    record("drained", why=why)
    emit("drained")
    os._exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: drain("sigterm"))
    record(
        "start",
        pod_id=os.environ.get("DORMANT_POD_ID"),
        broker=os.environ.get("DORMANT_BROKER_URL"),
        catalog=os.environ.get("DORMANT_CATALOG_URL"),
    )
    time.sleep(0.05)  # "imports"
    print(f"standby {os.getpid()} up", flush=True)
    emit("standby")
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "drain":
            drain("command")
        if command["cmd"] == "load":
            app_dir = Path(command["app_dir"])
            content = (app_dir / "app.txt").read_text().strip()
            if content.startswith("fail"):
                record("failed", content=content)
                emit("failed", error=f"cannot load {command['service']}: {content}")
                sys.exit(1)
            record(
                "load",
                app_dir=str(app_dir),
                service=command["service"],
                version=command["version"],
                live=command["live"],
                content=content,
            )
            print(f"serving {command['service']} v{command['version']}", file=sys.stderr, flush=True)
            emit("ready", service=command["service"], version=command["version"])
    drain("eof")


if __name__ == "__main__":
    main()
