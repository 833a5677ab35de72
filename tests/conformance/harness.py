"""The conformance harness: which runtimes the suite knows, how each is started, and a raw MQTT 5 caller.

A runtime joins the suite with one ``RuntimeKind`` entry in ``RUNTIMES``: its name, the app dir of its
build of the conformance service, the command that serves that app dir standalone, and what must exist
before it can run. Everything else (broker, catalog database, the calls and the expected answers) is the
same for every runtime.

The caller is paho-mqtt, not Dormant's own MQTT client or SDK: what the suite checks must not lean on the
Python implementation it compares the others with. One bad request (a user property that is not UTF-8)
cannot be sent by any client library, so ``raw_publish`` writes that PUBLISH byte by byte.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "tests" / "fixtures" / "services"
SERVICE = "conformance"
SOURCE_ROOTS = [
    ROOT / p for p in ("libs/python", "codegen", "catalog", "sidecar", "runtimes/python", "gateway")
]

ONLY_ENV = "DORMANT_CONFORMANCE_RUNTIMES"
"""Comma-separated runtime names to run (default: all of ``RUNTIMES``)."""


# --------------------------------------------------------------------------- runtimes


@dataclass(frozen=True)
class RuntimeKind:
    """A language runtime under test: how to start it standalone on the conformance service."""

    name: str
    app_dir: Path
    """The built conformance service this runtime serves."""
    argv: tuple[str, ...]
    """The command before the common arguments (``--app-dir DIR --version N --broker-url URL``)."""
    required: tuple[Path, ...] = ()
    """Files that must exist before the runtime can start (its build, the service's build)."""
    executable: str | None = None
    """A program that must be on PATH (e.g. ``node``)."""
    build_hint: str = ""
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[], None] | None = None
    """Builds what the service needs before it can be served (the Node service's ``dist/``); cheap when
    it is up to date."""

    def missing(self) -> str | None:
        """Why this runtime cannot run here, or None (after ``prepare``, when there is one)."""
        if self.executable is not None and shutil.which(self.executable) is None:
            return f"the {self.name} runtime needs `{self.executable}` on PATH"
        if self.prepare is not None and all(path.exists() for path in self.required[:1]):
            self.prepare()
        absent = [str(path.relative_to(ROOT)) for path in self.required if not path.exists()]
        if absent:
            return f"the {self.name} runtime is not built: missing {', '.join(absent)} ({self.build_hint})"
        return None

    def command(self, broker_url: str, *, version: int = 1, extra: Sequence[str] = ()) -> list[str]:
        return [
            *self.argv,
            "--app-dir",
            str(self.app_dir),
            "--version",
            str(version),
            "--broker-url",
            broker_url,
            *extra,
        ]


PYTHON_APP = SERVICES / "conformance"
NODE_APP = SERVICES / "conformance-node"
NODE_MAIN = ROOT / "runtimes" / "node" / "dist" / "main.js"


def _compile_node_service(app_dir: Path = NODE_APP) -> None:
    """Compile a Node conformance service into its ``dist/`` (tsc; from the compile cache when nothing
    changed). Several test workers may do it at once: every file is replaced atomically with the same
    bytes."""
    from dormant_codegen.node.compile import compile_service, write_dist

    write_dist(app_dir, compile_service(app_dir))

RUNTIMES: dict[str, RuntimeKind] = {
    "python": RuntimeKind(
        name="python",
        app_dir=PYTHON_APP,
        argv=(sys.executable, "-m", "dormant_runtime"),
        required=(PYTHON_APP / "generated" / "interface.json", PYTHON_APP / "generated" / "models.py"),
        build_hint="run `dormant generate tests/fixtures/services/conformance`",
        env={"PYTHONPATH": os.pathsep.join(str(p) for p in SOURCE_ROOTS)},
    ),
    "node": RuntimeKind(
        name="node",
        app_dir=NODE_APP,
        argv=("node", str(NODE_MAIN)),
        required=(NODE_MAIN, NODE_APP / "generated" / "interface.json", NODE_APP / "dist" / "service.js"),
        executable="node",
        build_hint="deploy/bootstrap.sh builds runtimes/node; the suite compiles conformance-node",
        prepare=_compile_node_service,
    ),
}


SECURE_SERVICE = "conformance-secure"
"""The identity conformance service (tests/conformance/test_identity.py): authentication required."""
PYTHON_SECURE_APP = SERVICES / "conformance-secure"
NODE_SECURE_APP = SERVICES / "conformance-secure-node"

SECURE_RUNTIMES: dict[str, RuntimeKind] = {
    "python": dataclasses.replace(
        RUNTIMES["python"],
        app_dir=PYTHON_SECURE_APP,
        required=(
            PYTHON_SECURE_APP / "generated" / "interface.json",
            PYTHON_SECURE_APP / "generated" / "models.py",
        ),
        build_hint="run `dormant generate tests/fixtures/services/conformance-secure`",
    ),
    "node": dataclasses.replace(
        RUNTIMES["node"],
        app_dir=NODE_SECURE_APP,
        required=(
            NODE_MAIN,
            NODE_SECURE_APP / "generated" / "interface.json",
            NODE_SECURE_APP / "dist" / "service.js",
        ),
        prepare=functools.partial(_compile_node_service, NODE_SECURE_APP),
    ),
}
"""The same runtimes serving the identity conformance service (same keys as ``RUNTIMES``)."""


def selected_runtimes() -> list[str]:
    only = os.environ.get(ONLY_ENV, "").strip()
    if not only:
        return list(RUNTIMES)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(RUNTIMES))
    if unknown:
        raise ValueError(f"{ONLY_ENV} names unknown runtimes {unknown}; known: {sorted(RUNTIMES)}")
    return names


class RuntimeProcess:
    """One runtime serving the conformance service standalone, as a child process.

    Its stdin stays an open pipe (a runtime may take stdin closing as "drain"); its output goes to
    ``log_file``. A parent-death signal (``setpriv``) makes sure it never outlives the test session.
    """

    def __init__(self, kind: RuntimeKind, *, broker_url: str, catalog_url: str, log_file: Path) -> None:
        self.kind = kind
        self.broker_url = broker_url
        self.catalog_url = catalog_url
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(
        self, *, version: int = 1, extra: Sequence[str] = (), extra_env: Mapping[str, str] | None = None
    ) -> None:
        """Start the runtime; ``extra_env`` is added to its environment (e.g. ``DORMANT_OIDC_*``)."""
        argv = self.kind.command(self.broker_url, version=version, extra=extra)
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            argv = [setpriv, "--pdeathsig=KILL", "--", *argv]
        env = dict(os.environ)
        env.pop("DORMANT_CONTROL_FD", None)
        env.update(self.kind.env)
        if "PYTHONPATH" in self.kind.env and os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = self.kind.env["PYTHONPATH"] + os.pathsep + os.environ["PYTHONPATH"]
        env.update(extra_env or {})
        env["DORMANT_BROKER_URL"] = self.broker_url
        env["DORMANT_CATALOG_URL"] = self.catalog_url
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
                close_fds=True,
            )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_file.exists():
            return "(no output)"
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def drain(self) -> None:
        """Ask the runtime to finish its calls in flight and exit (SIGTERM: every runtime's drain)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Drain, then kill what is left (the runtime's whole process group)."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()


# --------------------------------------------------------------------------- caller


@dataclass
class Received:
    """One PUBLISH the caller saw (any topic)."""

    topic: str
    payload: bytes
    correlation: bytes | None
    user_properties: list[tuple[str, str]]
    expiry_s: int | None
    at: float

    @property
    def status(self) -> str | None:
        """The ``status`` user property (the last one, if repeated)."""
        found = None
        for key, value in self.user_properties:
            if key == "status":
                found = value
        return found

    @property
    def statuses(self) -> list[str]:
        return [value for key, value in self.user_properties if key == "status"]

    def json(self) -> Any:
        return json.loads(self.payload)


class Caller:
    """A raw MQTT 5 client (paho) that sees every message on the broker (``#``) and sends requests with
    exactly the properties a test gives."""

    def __init__(self, host: str, port: int) -> None:
        self.client_id = f"conformance-{uuid.uuid4().hex[:10]}"
        self.inbox = f"reply/{self.client_id}"
        self._lock = threading.Condition()
        self._seen: list[Received] = []
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        self._client.on_message = self._on_message
        self._connected = threading.Event()
        self._client.on_connect = self._on_connect
        self._client.connect(host, port, keepalive=30)
        self._client.loop_start()
        if not self._connected.wait(15):
            raise RuntimeError(f"the caller could not connect to the broker at {host}:{port}")
        result, _ = self._client.subscribe("#", options=SubscribeOptions(qos=1, noLocal=False))
        if result != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"subscribe failed: {result}")
        self._barrier()  # our own message seen through "#": the subscription is in place

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        if not reason.is_failure:
            self._connected.set()

    def _on_message(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        props = getattr(message, "properties", None)
        correlation = getattr(props, "CorrelationData", None) if props is not None else None
        users = list(getattr(props, "UserProperty", []) or []) if props is not None else []
        expiry = getattr(props, "MessageExpiryInterval", None) if props is not None else None
        received = Received(
            topic=message.topic,
            payload=bytes(message.payload),
            correlation=None if correlation is None else bytes(correlation),
            user_properties=[(str(k), str(v)) for k, v in users],
            expiry_s=expiry,
            at=time.monotonic(),
        )
        with self._lock:
            self._seen.append(received)
            self._lock.notify_all()

    def _barrier(self) -> None:
        """A message to ourselves, seen through ``#``: everything subscribed before is in place."""
        topic = f"{self.inbox}-barrier/{uuid.uuid4().hex[:8]}"
        self._client.publish(topic, b"barrier", qos=1).wait_for_publish(10)
        self.wait_for(topic, timeout=10)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def new_reply_topic(self) -> str:
        return f"{self.inbox}/{uuid.uuid4().hex[:12]}"

    def publish(
        self,
        topic: str,
        payload: bytes | dict[str, Any] | list[Any] | str,
        *,
        response_topic: str | None = None,
        correlation: bytes | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        expiry_s: int | None = None,
    ) -> None:
        """Publish one request (QoS 1) with exactly these properties; a dict/list payload is JSON."""
        if isinstance(payload, dict | list):
            data = json.dumps(payload).encode()
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = payload
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        if response_topic is not None:
            props.ResponseTopic = response_topic
        if correlation is not None:
            props.CorrelationData = correlation
        if user_properties:
            props.UserProperty = list(user_properties)
        if expiry_s is not None:
            props.MessageExpiryInterval = expiry_s
        info = self._client.publish(topic, data, qos=1, properties=props)
        info.wait_for_publish(30)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"publish to {topic!r} failed: {info.rc}")

    def call(
        self,
        function_or_topic: str,
        payload: bytes | dict[str, Any] | list[Any] | str,
        *,
        correlation: bytes | None = None,
        user_properties: Sequence[tuple[str, str]] = (),
        expiry_s: int | None = None,
        timeout: float = 15.0,
    ) -> Received:
        """One native call: ``function_or_topic`` is a function name (``service/conformance/{fn}``) or a
        full topic; a fresh reply topic; the first answer on it (fails after ``timeout``)."""
        topic = function_or_topic if "/" in function_or_topic else f"service/{SERVICE}/{function_or_topic}"
        reply = self.new_reply_topic()
        self.publish(
            topic,
            payload,
            response_topic=reply,
            correlation=correlation if correlation is not None else new_call_id(),
            user_properties=user_properties,
            expiry_s=expiry_s,
        )
        return self.wait_for(reply, timeout=timeout)

    def seen_on(self, topic: str) -> list[Received]:
        with self._lock:
            return [r for r in self._seen if r.topic == topic]

    def wait_for(self, topic: str, *, timeout: float = 15.0, count: int = 1) -> Received:
        """The first message on ``topic``, once ``count`` have arrived there."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [r for r in self._seen if r.topic == topic]
                if len(found) >= count:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no answer on {topic!r} within {timeout:g}s (saw {len(found)})")
                self._lock.wait(left)

    def all_on(self, topic: str, *, count: int, timeout: float = 15.0) -> list[Received]:
        self.wait_for(topic, timeout=timeout, count=count)
        return self.seen_on(topic)

    def mark(self) -> int:
        """A position in everything seen so far (for ``seen_since``)."""
        with self._lock:
            return len(self._seen)

    def seen_since(self, mark: int) -> list[Received]:
        with self._lock:
            return list(self._seen[mark:])


def new_call_id() -> bytes:
    """16 random bytes, as the SDK sends."""
    return os.urandom(16)


def call_id_text(data: bytes) -> str:
    """How a callId is shown as text (docs/wire-protocol.md): printable ASCII as it is, else lowercase hex."""
    if data and all(0x20 <= b < 0x7F for b in data):
        return data.decode("ascii")
    return data.hex()


def wait_ready(
    runtime: RuntimeProcess, caller: Caller, *, topic: str = "echo", timeout: float = 90.0
) -> None:
    """Until the runtime answers an echo on ``topic`` (a call published before it subscribed is lost,
    so poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = runtime.exited()
        if code is not None:
            raise RuntimeError(
                f"the {runtime.kind.name} runtime exited with {code} before serving:\n{runtime.log_tail()}"
            )
        with contextlib.suppress(AssertionError):
            answer = caller.call(topic, {"text": "ready?"}, timeout=0.5)
            if answer.status == "ok":
                return
    raise RuntimeError(
        f"the {runtime.kind.name} runtime did not answer within {timeout:g}s:\n{runtime.log_tail()}"
    )


# --------------------------------------------------------------------------- raw packets


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _bytes(value: bytes) -> bytes:
    return struct.pack("!H", len(value)) + value


def raw_publish(
    host: str,
    port: int,
    topic: str,
    payload: bytes,
    *,
    response_topic: str,
    correlation: bytes,
    user_properties: Sequence[tuple[bytes, bytes]],
) -> bool:
    """Connect (MQTT 5), write one QoS 1 PUBLISH whose user properties are the given raw bytes (may be
    invalid UTF-8), and return True when the broker acknowledged it (False: it closed the connection,
    as a broker that checks UTF-8 does)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        client_id = f"conformance-raw-{uuid.uuid4().hex[:8]}".encode()
        body = _bytes(b"MQTT") + bytes((5, 0x02)) + struct.pack("!H", 30) + _varint(0) + _bytes(client_id)
        sock.sendall(bytes((0x10,)) + _varint(len(body)) + body)
        reader: IO[bytes] = sock.makefile("rb")
        head = reader.read(2)
        if len(head) < 2 or head[0] >> 4 != 2:
            raise RuntimeError("no CONNACK")
        reader.read(head[1])
        props = bytes((0x08,)) + _bytes(response_topic.encode()) + bytes((0x09,)) + _bytes(correlation)
        for key, value in user_properties:
            props += bytes((0x26,)) + _bytes(key) + _bytes(value)
        packet_id = 1
        body = _bytes(topic.encode()) + struct.pack("!H", packet_id) + _varint(len(props)) + props + payload
        sock.sendall(bytes((0x32,)) + _varint(len(body)) + body)
        try:
            ack = reader.read(2)
        except OSError:
            return False
        return len(ack) == 2 and ack[0] >> 4 == 4


# --------------------------------------------------------------------------- expected answers


def expect_ok(answer: Received, correlation: bytes | None) -> Any:
    """A success answer: one ``status: ok``, the correlation data echoed; returns the result."""
    assert answer.statuses == ["ok"], f"status user properties {answer.statuses}: {answer.payload[:300]!r}"
    assert answer.correlation == correlation, f"correlation {answer.correlation!r} != {correlation!r}"
    return answer.json()


def expect_error(
    answer: Received,
    error_type: str,
    correlation: bytes | None,
    *,
    details: Any = ...,
) -> dict[str, Any]:
    """An error answer: one ``status: error``, the correlation echoed, exactly ``{type, message, details}``
    with this type and a non-empty message (and these details, unless ``...``); returns the payload."""
    assert answer.statuses == ["error"], f"status user properties {answer.statuses}: {answer.payload[:300]!r}"
    assert answer.correlation == correlation, f"correlation {answer.correlation!r} != {correlation!r}"
    body = answer.json()
    return expect_error_body(body, error_type, details=details)


def expect_error_body(body: Any, error_type: str, *, details: Any = ...) -> dict[str, Any]:
    assert isinstance(body, dict) and set(body) == {"type", "message", "details"}, body
    assert body["type"] == error_type, body
    assert isinstance(body["message"], str) and body["message"], body
    if details is not ...:
        assert body["details"] == details, body
    return body
