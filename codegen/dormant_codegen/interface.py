"""The service interface document (``interface.json``) and its two hashes.

``interfaceHash`` covers only what callers depend on (service, platform interface, its authentication
mode, and per function its input/output schema, timeout and required roles); ``sourceHash`` (see
``inputs``) covers every input file. The
canonical form is JSON with sorted keys, no whitespace, UTF-8, non-ASCII kept as is.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .constants import BASE_RUNTIME, HEADER_TEXT, JSON_HEADER_KEY, PLATFORM_INTERFACE


def canonical_json(obj: Any) -> bytes:
    """``sort_keys``, separators ``(",", ":")``, ``ensure_ascii=False``, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def sha256_ref(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def interface_hash(service: str, functions: dict[str, dict[str, Any]], auth: str = "required") -> str:
    """sha256 of the canonical JSON of {service, platformInterface, auth, functions: {input, output,
    timeout, roles}}."""
    core = {
        "service": service,
        "platformInterface": PLATFORM_INTERFACE,
        "auth": auth,
        "functions": {
            name: {
                "input": fn["input"],
                "output": fn["output"],
                "timeout": fn["timeout"],
                "roles": fn.get("roles", []),
            }
            for name, fn in functions.items()
        },
    }
    return sha256_ref(canonical_json(core))


def build_interface(
    service: str, functions: dict[str, dict[str, Any]], source_hash: str, *, auth: str = "required"
) -> dict[str, Any]:
    """The content of ``interface.json`` (functions sorted by name)."""
    ordered = {name: functions[name] for name in sorted(functions)}
    return {
        JSON_HEADER_KEY: HEADER_TEXT,
        "service": service,
        "baseRuntime": BASE_RUNTIME,
        "platformInterface": PLATFORM_INTERFACE,
        "auth": auth,
        "functions": ordered,
        "interfaceHash": interface_hash(service, ordered, auth),
        "sourceHash": source_hash,
    }


def dump_json(obj: Any) -> bytes:
    """How generated JSON files are written: 2-space indent, key order as built, trailing newline."""
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
