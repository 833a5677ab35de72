"""``check_import``: import the service the way a runtime will, before it is built, not 30 s into a pod.

A handler module that imports a package the environment lacks, raises at import time or does not
compile passes ``generate`` (which reads sources with ``ast`` only) and would fail only once a pod loads
the layer. ``build`` (for ``dormant build`` and ``dormant publish``) therefore imports the generated
service in a fresh interpreter (this one's executable and environment, so the same packages) with the
loader the runtime uses (``dormant._loader``: the directory as a package of its own). A subprocess, so a
broken module can neither poison nor hang the CLI (it gets ``timeout`` seconds). A failure becomes a
``Diagnostic`` at the innermost traceback frame inside the service directory (for a ``SyntaxError``,
at the offending token), with the exception's type and message.

A success is remembered in ``generated/.dormant-import-check.json`` (hidden, so never packed) under a
key over the generate stamp (every input and generated file), the interpreter and the mtimes of the
``sys.path`` folders (installing or removing a package changes its folder): a no-op build does not
start an interpreter. Failures are not remembered: installing the missing package is enough.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .constants import GENERATED_DIR, STAMP_FILE
from .diagnostics import CodegenError, Diagnostic
from .service import display_root

CHECK_FILE = ".dormant-import-check.json"
DISPATCH_MODULE = f"{GENERATED_DIR}.dispatch"
"""What a runtime without the SDK's loader (``dormant._loader``) imports from the service directory."""
DEFAULT_TIMEOUT_S = 60.0

# Runs in the child: load the service as the runtime does (the SDK's loader when it has one; else the
# service directory first on sys.path and ``generated.dispatch``), then write what happened, as JSON, to
# argv[2]. The loader wraps the author's exception in LoadError: report the author's.
_CHILD = r"""
import importlib, json, sys, traceback
service_dir, result_path, module_name = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:0] = json.loads(sys.argv[4])
result = {"ok": True}
try:
    try:
        from dormant._loader import load_service
    except ImportError:
        sys.path.insert(0, service_dir)
        spec = getattr(importlib.import_module(module_name), "SERVICE", None)
        from dormant.app import ServiceSpec
        if not isinstance(spec, ServiceSpec):
            raise LookupError(module_name + " does not define SERVICE as a dormant.app.ServiceSpec")
    else:
        load_service(service_dir)
except BaseException as caught:
    exc = caught.__cause__ if type(caught).__name__ == "LoadError" and caught.__cause__ else caught
    frames = [[f.filename, f.lineno, getattr(f, "colno", None)]
              for f in traceback.extract_tb(exc.__traceback__)]
    if isinstance(exc, SyntaxError) and exc.filename:
        frames.append([exc.filename, exc.lineno, (exc.offset or 1) - 1])
    result = {"ok": False, "type": type(exc).__name__, "message": str(exc), "frames": frames}
with open(result_path, "w", encoding="utf-8") as fh:
    json.dump(result, fh)
"""


def _key(service_dir: Path, extra: str = "") -> str | None:
    """The cache key of an import check of ``service_dir`` as it is now, or None without a stamp."""
    try:
        stamp = (service_dir / GENERATED_DIR / STAMP_FILE).read_bytes()
    except OSError:
        return None
    h = hashlib.sha256(b"dormant-import-check/1\0" + stamp + b"\0" + extra.encode())
    h.update(f"{sys.executable}\0{sys.version}\0{os.environ.get('PYTHONPATH', '')}\0".encode())
    for entry in sys.path:
        try:
            h.update(f"{entry}\0{os.stat(entry or '.').st_mtime_ns}\0".encode())
        except OSError:
            h.update(f"{entry}\0-\0".encode())
    return h.hexdigest()


def _cached(service_dir: Path, key: str) -> bool:
    try:
        data = json.loads((service_dir / GENERATED_DIR / CHECK_FILE).read_bytes())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("key") == key


def _remember(service_dir: Path, key: str) -> None:
    path = service_dir / GENERATED_DIR / CHECK_FILE
    tmp = path.with_name(f"{CHECK_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps({"key": key}) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only tree only loses the cache


def check_import(
    service_dir: Path,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    extra_paths: Sequence[Path] = (),
    key_extra: str = "",
) -> None:
    """Import the generated ``SERVICE`` of ``service_dir`` in a subprocess; ``CodegenError`` if it fails.

    ``service_dir`` must have been generated (``generate`` runs first in ``build``). ``extra_paths`` go
    first on the child's ``sys.path``, as a runtime puts a version's layers (its dependency layer);
    ``key_extra`` says what they hold (the cache key covers it, not their temporary paths).
    """
    service_dir = Path(service_dir)
    key = _key(service_dir, key_extra)
    if key is not None and _cached(service_dir, key):
        return
    result = _run_child(service_dir, timeout, [str(p) for p in extra_paths])
    if result.get("ok") is True:
        if key is not None:
            _remember(service_dir, key)
        return
    with contextlib.suppress(OSError):
        (service_dir / GENERATED_DIR / CHECK_FILE).unlink()
    raise CodegenError([_diagnostic(service_dir, result)])


def _run_child(service_dir: Path, timeout: float, extra_paths: list[str]) -> dict[str, Any]:
    absolute = service_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="dormant-import-check-") as tmp:
        result_path = Path(tmp) / "result.json"
        try:
            proc = subprocess.run(
                # -P: no working directory on sys.path before the child sets it (a service module
                # named like the stdlib one the child uses would shadow it); -B: no .pyc in the tree.
                [
                    sys.executable,
                    "-P",
                    "-B",
                    "-c",
                    _CHILD,
                    str(absolute),
                    str(result_path),
                    DISPATCH_MODULE,
                    json.dumps(extra_paths),
                ],
                cwd=absolute,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return {
                "ok": False,
                "message": f"importing the service took more than {timeout:g} s: does a module wait for "
                "something (a network call, input) at import time?",
                "frames": [],
            }
        try:
            loaded = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            tail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            return {
                "ok": False,
                "message": f"importing the service ended the interpreter (exit code {proc.returncode}): "
                + tail[0],
                "frames": [],
            }
    return loaded if isinstance(loaded, dict) else {"ok": False, "message": "no result", "frames": []}


def _diagnostic(service_dir: Path, result: dict[str, Any]) -> Diagnostic:
    root = display_root(service_dir)
    absolute = service_dir.resolve()
    kind = result.get("type")
    what = f"{kind}: {result.get('message')}" if kind else str(result.get("message"))
    message = f"the service does not import, so no pod could load it: {what}"
    if kind == "ModuleNotFoundError":
        message += " (install it where the runtime runs, or vendor it into the service directory)"
    for filename, line, col in reversed(result.get("frames") or []):
        try:
            rel = Path(filename).resolve().relative_to(absolute).as_posix()
        except (ValueError, OSError, TypeError):
            continue
        shown = f"{root}/{rel}" if root else rel
        return Diagnostic(shown, int(line or 1), int(col) + 1 if isinstance(col, int) else 1, message)
    return Diagnostic(root or ".", 1, 1, message)
