"""Every ``dormant`` subcommand's help renders (a stray ``%`` in a help string breaks argparse)."""

from __future__ import annotations

import argparse

import pytest

from dormant_cli import build_parser


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_top_level_help_lists_the_commands() -> None:
    text = build_parser().format_help()
    for name in ("generate", "build", "publish", "deploy", "pod", "call", "dev"):
        assert name in text


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_each_subcommand_help_renders(name: str) -> None:
    assert _subcommands()[name].format_help().startswith("usage: dormant " + name)
