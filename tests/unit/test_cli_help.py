"""Every ``dormant`` subcommand's help renders (a stray ``%`` in a help string breaks argparse), describes
its positional arguments and ends with an example."""

from __future__ import annotations

import argparse

import pytest

from dormant_cli import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found[name] = child
                found.update({f"{name} {n}": p for n, p in _subparsers(child).items()})
    return found


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    """Every subcommand, nested ones too (``alias set``), by the words that run it."""
    return _subparsers(build_parser())


def test_top_level_help_lists_the_commands() -> None:
    text = build_parser().format_help()
    for name in ("generate", "build", "publish", "deploy", "pod", "call", "dev", "ls", "versions", "pods"):
        assert name in text


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_each_subcommand_help_renders(name: str) -> None:
    text = _subcommands()[name].format_help()
    assert text.startswith("usage: dormant " + name)
    assert "%%" not in text


def help_problems(name: str, parser: argparse.ArgumentParser) -> list[str]:
    """What ``dormant {name} --help`` lacks: an example of itself, kept as written, and help for every
    positional argument."""
    problems = []
    epilog = parser.epilog or ""
    if not (epilog.startswith("example:") and f"dormant {name}" in epilog):
        problems.append(f"dormant {name}: no example in its help")
    elif not set(epilog.splitlines()) <= set(parser.format_help().splitlines()):  # re-wrapped by argparse
        problems.append(f"dormant {name}: the example is not shown as written")
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        if not action.help or action.help == argparse.SUPPRESS:
            problems.append(f"dormant {name}: positional {action.dest!r} has no help")
    return problems


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_each_subcommand_has_an_example_and_described_positionals(name: str) -> None:
    assert help_problems(name, _subcommands()[name]) == []


def test_the_check_catches_a_bare_subcommand() -> None:
    sub = argparse.ArgumentParser(prog="dormant").add_subparsers()
    bare = sub.add_parser("bare", epilog="example:\n  dormant bare x")
    bare.add_argument("thing")
    assert help_problems("bare", bare) == [
        "dormant bare: the example is not shown as written",
        "dormant bare: positional 'thing' has no help",
    ]
    assert help_problems("other", sub.add_parser("other")) == ["dormant other: no example in its help"]
