"""The ``dormant`` command: one console script fronting codegen, catalog, pods, calls and the local mesh.

The one package that may import every other (docs/architecture.md, "Package graph"). Each subcommand
lives in its own module and imports its component only when it runs (``# lazy: start-up time``), so
``dormant call`` does not load codegen. ``python -m dormant_cli`` is the same as the console script.

``main`` is where every command ends: an expected failure (``common.CommandError``) becomes one line on
stderr, and a reader that closes the pipe early (``dormant ls | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import (
    build_cmds,
    call_cmd,
    compat_cmd,
    completion_cmd,
    config_cmd,
    console_cmd,
    data_cmd,
    deploy_cmd,
    dev_cmd,
    env_cmd,
    gateway_cmd,
    image_cmd,
    init_cmd,
    layer_cmd,
    list_cmds,
    logs_cmd,
    pod_cmd,
    rollout_cmds,
    scale_cmd,
    secret_cmd,
    token_cmd,
    wait_cmd,
)
from .common import CommandError

EXIT_BROKEN_PIPE = 141
"""128 + SIGPIPE: what a command killed by a closed pipe exits with in a shell."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dormant",
        description="Dormant: an MQTT-native function mesh with sleeping pods.",
    )
    parser.add_argument("--version", action="version", version="dormant 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = (
        init_cmd,
        build_cmds,
        deploy_cmd,
        rollout_cmds,
        compat_cmd,
        wait_cmd,
        pod_cmd,
        call_cmd,
        dev_cmd,
        gateway_cmd,
    )
    for module in (
        *commands,
        scale_cmd,
        env_cmd,
        config_cmd,
        secret_cmd,
        layer_cmd,
        image_cmd,
        list_cmds,
        data_cmd,
        logs_cmd,
        token_cmd,
        console_cmd,
        completion_cmd,
    ):
        module.register(sub)
    parser.set_defaults(root_parser=parser)  # for `dormant completion`
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.run(args)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
    except KeyboardInterrupt:
        return 130
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader stopped reading (`| head`): say nothing, and keep the interpreter's final flush
        # from failing again on the same pipe (the recipe in the `signal` module's documentation).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return code


if __name__ == "__main__":
    sys.exit(main())
