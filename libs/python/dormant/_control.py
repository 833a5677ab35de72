"""The sidecar ↔ runtime control protocol, declared once for both ends (private to Dormant).

The sidecar (``dormant_sidecar.runtime``) starts a runtime process (``dormant_runtime``) and talks to it
over two pipes, one JSON object per line:

* commands, sidecar → runtime on the runtime's stdin: ``{"cmd": "load", "app_dir", "service",
  "version", "live", "slot"?, "environment"?, "extra_paths"?, "secrets_token"?, "memory_mb"?,
  "max_concurrency"?, "generation"?}`` and ``{"cmd": "drain"}``; stdin closing also means drain, so a runtime
  never outlives its sidecar;
* events, runtime → sidecar on the file descriptor named by ``DORMANT_CONTROL_FD``: ``standby``
  (imports done), ``ready`` (subscribed), ``failed`` (with ``error``; then exit 1), ``drained``
  (then exit 0) and ``connection`` (with ``connected``: the broker connection was lost or is back, after
  ``ready``; what the sidecar's readiness check reports).

Neither end spells a key or a name itself: both encode and decode through this module. It lives in the
SDK (as a private module) because it is the one package both the sidecar and the runtime import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

CONTROL_FD_ENV: Final = "DORMANT_CONTROL_FD"
"""The environment variable naming the file descriptor the runtime writes its events to."""

STANDBY: Final = "standby"
READY: Final = "ready"
FAILED: Final = "failed"
DRAINED: Final = "drained"
CONNECTION: Final = "connection"
EVENTS: Final = frozenset({STANDBY, READY, FAILED, DRAINED, CONNECTION})


@dataclass(frozen=True, slots=True)
class Load:
    """Load the unpacked app layer in ``app_dir`` and serve it; ``slot`` keys the MQTT session."""

    app_dir: Path
    service: str
    version: int
    live: bool = True
    slot: int | None = None
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    """The function's environment variables (set before the service is imported); values may be
    resolved secrets, so they are never in the repr."""
    secrets_token: str | None = field(default=None, repr=False)
    """A secrets-store token scoped to this function (minted by the sidecar for this process), with
    which the runtime resolves the ``${SECRET:...}`` references of ``environment``; never in the
    repr, never in the process environment."""
    extra_paths: tuple[Path, ...] = ()
    """Folders of the unpacked extra layers (dependency layer, attached layers) to put on the import
    path, in order, before the service is imported."""
    memory_mb: int | None = None
    """The function's memory limit: what the process may allocate beyond what it holds when the load
    command arrives (None: no limit)."""
    max_concurrency: int | None = None
    """Calls this runtime runs at once before it answers ``Throttled`` (None: no limit)."""
    generation: int | None = None
    """The slot's generation: with ``slot`` it keys the MQTT session (a new generation of the same
    version gets a session of its own while the previous generation's runtime drains)."""


@dataclass(frozen=True, slots=True)
class Drain:
    """Finish the calls in flight and exit."""


Command = Load | Drain


@dataclass(frozen=True, slots=True)
class Event:
    """One runtime event: ``kind`` is one of ``EVENTS``; ``fields`` holds the rest of the line."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def error(self) -> str:
        """Why the runtime failed (for ``failed``)."""
        return str(self.fields.get("error") or "failed")


def encode_command(command: Command) -> bytes:
    if isinstance(command, Drain):
        return orjson.dumps({"cmd": "drain"}) + b"\n"
    body: dict[str, Any] = {
        "cmd": "load",
        "app_dir": str(command.app_dir),
        "service": command.service,
        "version": command.version,
        "live": command.live,
    }
    if command.slot is not None:
        body["slot"] = command.slot
    if command.environment:
        body["environment"] = command.environment
    if command.secrets_token:
        body["secrets_token"] = command.secrets_token
    if command.extra_paths:
        body["extra_paths"] = [str(path) for path in command.extra_paths]
    if command.memory_mb is not None:
        body["memory_mb"] = command.memory_mb
    if command.max_concurrency is not None:
        body["max_concurrency"] = command.max_concurrency
    if command.generation is not None:
        body["generation"] = command.generation
    return orjson.dumps(body) + b"\n"


def decode_command(line: bytes) -> Command | None:
    """The command on one stdin line; None for a line that is not one (ignored by the runtime)."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("cmd")
    if kind == "drain":
        return Drain()
    if kind != "load":
        return None
    app_dir, service, version = data.get("app_dir"), data.get("service"), data.get("version")
    slot = data.get("slot")
    if not isinstance(app_dir, str) or not isinstance(version, int) or isinstance(version, bool):
        return None
    environment = data.get("environment") or {}
    if not isinstance(environment, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in environment.items()
    ):
        return None
    extra_paths = data.get("extra_paths") or []
    if not isinstance(extra_paths, list) or not all(isinstance(p, str) for p in extra_paths):
        return None
    token = data.get("secrets_token")
    return Load(
        app_dir=Path(app_dir),
        service=service if isinstance(service, str) else "",
        version=version,
        live=bool(data.get("live", True)),
        slot=slot if isinstance(slot, int) and not isinstance(slot, bool) else None,
        environment=environment,
        extra_paths=tuple(Path(p) for p in extra_paths),
        secrets_token=token if isinstance(token, str) and token else None,
        memory_mb=_positive_int(data.get("memory_mb")),
        max_concurrency=_positive_int(data.get("max_concurrency")),
        generation=_positive_int(data.get("generation")),
    )


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def encode_event(kind: str, **fields: Any) -> bytes:
    if kind not in EVENTS:
        raise ValueError(f"not a control event: {kind!r}")
    return orjson.dumps({"event": kind, **fields}) + b"\n"


def decode_event(line: bytes) -> Event | None:
    """The event on one control line; None for a malformed line or an unknown event."""
    try:
        data = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("event") not in EVENTS:
        return None
    kind = str(data.pop("event"))
    return Event(kind, data)
