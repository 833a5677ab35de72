"""The ``dormant`` command: one console script fronting codegen, catalog, pods, calls and the local mesh.

The one package that may import every other (docs/architecture.md, "Package graph"). Each subcommand
lives in its own module and imports its component only when it runs (``# lazy: start-up time``), so
``dormant call`` does not load codegen. ``python -m dormant_cli`` is the same as the console script.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import build_cmds, call_cmd, deploy_cmd, dev_cmd, gateway_cmd, pod_cmd, rollout_cmds, token_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dormant",
        description="Dormant: an MQTT-native function mesh with sleeping pods.",
    )
    parser.add_argument("--version", action="version", version="dormant 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (build_cmds, deploy_cmd, rollout_cmds, pod_cmd, call_cmd, dev_cmd, gateway_cmd, token_cmd):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
