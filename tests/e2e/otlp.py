"""Receiving traces in tests: an OTLP/HTTP trace receiver, and the ``rotel`` collector in front of it.

``OtlpReceiver`` serves ``POST /v1/traces`` as an OpenTelemetry collector's OTLP/HTTP receiver does:
the body is an ``ExportTraceServiceRequest`` in protobuf (gzip or deflate when the sender says so),
decoded with the OpenTelemetry protocol's own message classes (``opentelemetry-proto``), and answered
with an ``ExportTraceServiceResponse``. The spans are kept as ``ReceivedSpan`` (ids in hex, attributes
as Python values, the resource's attributes beside them) for assertions.

``RotelCollector`` runs the collector packaged on PyPI as ``rotel`` (its ``rotel-agent`` binary): it
receives OTLP (HTTP and gRPC) from the processes under test and exports it with its OTLP exporter to an
``OtlpReceiver``, so what a test asserts went through a real collector first.
"""

from __future__ import annotations

import asyncio
import gzip
import http.server
import importlib.util
import socket
import subprocess
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from dormant_local import free_port

TRACES_PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    """Empty for a root span."""
    name: str
    kind: str
    """``CLIENT``, ``SERVER``, ``PRODUCER``, ``CONSUMER`` or ``INTERNAL``."""
    attributes: dict[str, Any]
    resource: dict[str, Any]
    status: str
    """``UNSET``, ``OK`` or ``ERROR``."""
    start_ns: int
    end_ns: int
    trace_state: str = ""
    flags: int = 0

    @property
    def service_name(self) -> str:
        return str(self.resource.get("service.name", ""))


def _value(value: AnyValue) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _attributes(value.kvlist_value.values)
    return None if which is None else getattr(value, which)


def _attributes(pairs: Any) -> dict[str, Any]:
    return {pair.key: _value(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def decode_spans(body: bytes) -> list[ReceivedSpan]:
    """The spans of one ``ExportTraceServiceRequest`` (protobuf)."""
    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        name=span.name,
                        kind=Span.SpanKind.Name(span.kind).removeprefix("SPAN_KIND_"),
                        attributes=_attributes(span.attributes),
                        resource=resource,
                        status=Status.StatusCode.Name(span.status.code).removeprefix("STATUS_CODE_"),
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        trace_state=span.trace_state,
                        flags=span.flags,
                    )
                )
    return spans


@dataclass
class OtlpReceiver:
    """An OTLP/HTTP trace receiver on ``127.0.0.1``; ``url`` is what ``OTEL_EXPORTER_OTLP_ENDPOINT``
    takes (the exporters add ``/v1/traces``). With ``decode_later`` it only keeps the bodies and decodes
    them when ``spans`` is called (a benchmark's receiver, which must cost next to nothing meanwhile)."""

    port: int = field(default_factory=free_port)
    decode_later: bool = False
    requests: int = 0
    refused: list[str] = field(default_factory=list)
    _spans: list[ReceivedSpan] = field(default_factory=list)
    _bodies: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                problem = receiver._take(self.path, self.headers.get("content-type", ""), body, self.headers)
                if problem is None:
                    status, out = 200, ExportTraceServiceResponse().SerializeToString()
                else:
                    status, out = 400, problem.encode()
                self.send_response(status)
                self.send_header("content-type", _CONTENT_TYPES[status])
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="otlp-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _take(self, path: str, content_type: str, body: bytes, headers: Any) -> str | None:
        """Store the spans of one export; the reason it is refused otherwise."""
        if path != TRACES_PATH:
            return self._refuse(f"not a trace export path: {path}")
        if content_type.split(";")[0].strip() != _CONTENT_TYPES[200]:
            return self._refuse(f"not protobuf: {content_type}")
        encoding = (headers.get("content-encoding") or "").strip().lower()
        try:
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            elif encoding not in ("", "identity"):
                return self._refuse(f"unknown content-encoding {encoding}")
            if self.decode_later:
                with self._lock:
                    self.requests += 1
                    self._bodies.append(body)
                return None
            spans = decode_spans(body)
        except Exception as exc:  # a malformed export is the sender's bug: say so in the test
            return self._refuse(f"undecodable export: {exc!r}")
        with self._lock:
            self.requests += 1
            self._spans.extend(spans)
        return None

    def _refuse(self, reason: str) -> str:
        with self._lock:
            self.refused.append(reason)
        return reason

    def spans(self, trace_id: str | None = None) -> list[ReceivedSpan]:
        with self._lock:
            bodies, self._bodies = self._bodies, []
        decoded = [span for body in bodies for span in decode_spans(body)]
        with self._lock:
            self._spans.extend(decoded)
            return [s for s in self._spans if trace_id is None or s.trace_id == trace_id]

    def clear(self) -> None:
        with self._lock:
            self._spans.clear()
            self._bodies.clear()

    async def wait_for(
        self, condition: Callable[[list[ReceivedSpan]], bool], what: str, timeout: float = 60.0
    ) -> list[ReceivedSpan]:
        """The spans received, once ``condition`` holds for them (polled; AssertionError after
        ``timeout`` seconds, listing what did arrive)."""
        end = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if condition(spans):
                return spans
            if time.monotonic() > end:
                shown = "\n".join(f"  {s.name} {s.trace_id}/{s.span_id}<-{s.parent_span_id}" for s in spans)
                raise AssertionError(
                    f"not received within {timeout:g}s: {what}; refused {self.refused};\n{shown}"
                )
            await asyncio.sleep(0.1)


_CONTENT_TYPES = {200: PROTOBUF, 400: "text/plain"}


def rotel_binary() -> Path | None:
    """The ``rotel-agent`` binary of the installed ``rotel`` wheel, or None when it is not installed."""
    spec = importlib.util.find_spec("rotel")
    if spec is None or not spec.submodule_search_locations:
        return None
    binary = Path(spec.submodule_search_locations[0]) / "rotel-agent"
    return binary if binary.exists() else None


@dataclass
class RotelCollector:
    """``rotel-agent start``: OTLP in on ``url`` (HTTP) and a gRPC port, OTLP/HTTP out to ``forward_to``."""

    forward_to: str
    log_file: Path
    port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> subprocess.Popen[bytes]:
        binary = rotel_binary()
        if binary is None:
            raise RuntimeError("the rotel collector is not installed (pip install rotel)")
        log = self.log_file.open("ab")
        self.proc = subprocess.Popen(
            [
                str(binary),
                "start",
                "--otlp-http-endpoint",
                f"127.0.0.1:{self.port}",
                "--otlp-grpc-endpoint",
                f"127.0.0.1:{self.grpc_port}",
                "--exporter",
                "otlp",
                "--otlp-exporter-protocol",
                "http",
                "--otlp-exporter-endpoint",
                self.forward_to,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self.proc

    async def start(self, timeout: float = 30.0) -> None:
        """Start it and wait until it listens."""
        proc = self.spawn()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if proc.poll() is not None:
                raise AssertionError(f"rotel exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError(f"rotel not listening after {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

