"""Run one function of a service in process under ``dormant.testing.TestClient``, for a debugger.

The Dormant VS Code extension starts this script in a Python (debugpy) session, so a breakpoint in the
handler stops there: the call goes through the runtime's own dispatcher (input checked against the
schema, the model built, the handler run with a ``Context``, the output checked), with no broker or
database. Usage::

    python dormant_debug_call.py SERVICE_DIR FUNCTION [INPUT]

INPUT is JSON (default ``{}``), or ``@FILE`` to read it from a file. The result is printed as JSON; a
typed error (``ValidationError``, ``NotFound``, ...) is printed on stderr as ``error: Kind: message``
with exit status 1; an exception in the handler propagates with its traceback (so the debugger stops
on it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def read_input(text: str) -> Any:
    """The call input: JSON, or the JSON in a file for ``@FILE``; ``ValueError`` when it is neither."""
    source = "the input"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read {source}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{source} is not valid JSON: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dormant_debug_call.py",
        description="Call a service's function in process under dormant.testing.TestClient.",
    )
    parser.add_argument("service_dir", type=Path, help="the service directory, e.g. examples/greeter")
    parser.add_argument("function", help="the function's name, e.g. greet")
    parser.add_argument("input", nargs="?", default="{}", help="the input as JSON, or @FILE (default {})")
    args = parser.parse_args(argv)
    try:
        params = read_input(args.input)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from dormant.errors import DormantError  # lazy: --help works without dormant installed
    from dormant.errors import SystemError as HandlerFailed
    from dormant.testing import LoadError, TestClient

    try:
        client = TestClient(args.service_dir)
    except LoadError as exc:
        print(f"error: cannot load {args.service_dir}: {exc}", file=sys.stderr)
        return 2
    with client:
        try:
            result = client.call_sync(args.function, params)
        except DormantError as exc:
            if isinstance(exc, HandlerFailed) and isinstance(exc.__cause__, Exception):
                raise  # the handler raised: its own traceback, where the debugger stops
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
