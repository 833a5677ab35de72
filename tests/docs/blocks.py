"""Reading a Markdown document into the code blocks the docs test runs, and its ``docs-test`` directives.

The rules (docs/testing.md, "Documents that run", says the same for writers):

- A fenced block tagged ``sh``, ``bash`` or ``console`` runs. ``console`` blocks run only their
  ``$ `` lines, the lines a trailing ``\\`` continues and ``> `` lines right after them (the shell's
  secondary prompt); the other lines are sample output and are not compared. Blocks tagged otherwise
  (plain, ``text``, ``json``, ``python`` …) are not run.
- A line ``<!-- docs-test: DIRECTIVE -->`` as the last non-blank line before a block applies to it:
  ``skip (reason)`` does not run it (the reason is required); ``python`` runs a ``python`` block
  with the session's ``python``; ``fails "TEXT"`` runs it and expects it to exit non-zero with
  TEXT in its output (in a subshell: what it sets does not carry on).
- ``<!-- docs-test: mesh ARGS -->`` anywhere else in a file gives the arguments of the ``dormant dev``
  the file runs against (``mesh none``: the file needs no mesh).

Anything else after ``docs-test:`` is an error, so a typo cannot silently skip or run a block.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUN_LANGS = frozenset({"sh", "bash", "console"})
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})(?P<info>[^`]*)$")
_DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s+\((?P<reason>[^)]+)\)$")
_FAILS = re.compile(r'^fails\s+"(?P<text>[^"]+)"$')


class DocError(ValueError):
    """A document the docs test cannot run as written (a bad directive, an unclosed fence)."""


@dataclass(frozen=True, slots=True)
class Block:
    """One fenced code block. ``line`` is the 1-based line of its opening fence; ``lines`` its content,
    the fence's indentation removed; ``mode`` how it runs: ``sh``, ``console``, ``python`` or ``None``."""

    path: Path
    line: int
    lang: str
    lines: tuple[str, ...]
    mode: str | None
    skip_reason: str | None = None
    expect_failure: str | None = None

    @property
    def where(self) -> str:
        """``docs/gateway.md:120``: the document (relative to the repository) and the fence's line."""
        return f"{display(self.path)}:{self.line}"

    def script(self) -> str:
        """The text to run. Line N of it is line ``self.line + N`` of the document, so a shell's
        ``$LINENO`` maps back (a console block's output lines become blank lines)."""
        if self.mode != "console":
            return "\n".join(self.lines) + "\n"
        out: list[str] = []
        in_command = continued = False
        for text in self.lines:
            if continued:
                out.append(text)
            elif text.startswith("$ "):
                out.append(text[2:])
            elif in_command and text.startswith("> "):  # the shell's secondary prompt
                out.append(text[2:])
            else:
                out.append("")
                in_command = continued = False
                continue
            in_command = True
            continued = text.rstrip().endswith("\\")
        return "\n".join(out) + "\n"


@dataclass(slots=True)
class Document:
    path: Path
    blocks: list[Block] = field(default_factory=list)
    mesh_args: list[str] | None = field(default_factory=list)  # None: no mesh

    @property
    def runnable(self) -> list[Block]:
        return [b for b in self.blocks if b.mode is not None and b.skip_reason is None]


def display(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def parse(path: Path, text: str | None = None) -> Document:
    """Every fenced block of ``path`` with the directive that applies to it."""
    lines = (path.read_text() if text is None else text).splitlines()
    doc = Document(path)
    pending: tuple[int, str] | None = None  # a directive waiting for the block right after it
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            directive = _DIRECTIVE.match(lines[i])
            if directive is not None:
                body = directive["body"]
                if body == "mesh" or body.startswith("mesh "):
                    args = shlex.split(body[4:])
                    doc.mesh_args = None if args == ["none"] else args
                else:
                    pending = (i + 1, body)
            elif lines[i].strip() and pending is not None:
                raise DocError(f"{path}:{pending[0]}: docs-test directive not right before a code block")
            i += 1
            continue
        start = i
        indent, ticks = fence["indent"], fence["ticks"]
        lang = fence["info"].strip().split()[0].lower() if fence["info"].strip() else ""
        body_lines: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != ticks:
            body_lines.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        if i >= len(lines):
            raise DocError(f"{path}:{start + 1}: code block never closed")
        i += 1
        doc.blocks.append(_block(path, start + 1, lang, tuple(body_lines), pending))
        pending = None
    if pending is not None:
        raise DocError(f"{path}:{pending[0]}: docs-test directive not followed by a code block")
    return doc


def _block(
    path: Path, line: int, lang: str, lines: tuple[str, ...], directive: tuple[int, str] | None
) -> Block:
    mode: str | None = ("console" if lang == "console" else "sh") if lang in RUN_LANGS else None
    if directive is None:
        return _checked(Block(path, line, lang, lines, mode))
    where, body = directive
    if skip := _SKIP.match(body):
        return Block(path, line, lang, lines, mode, skip_reason=skip["reason"].strip())
    if body == "python":
        if lang != "python":
            raise DocError(f"{path}:{where}: `docs-test: python` before a {lang or 'plain'} block")
        return Block(path, line, lang, lines, "python")
    if fails := _FAILS.match(body):
        if mode is None:
            raise DocError(f"{path}:{where}: `docs-test: fails` before a block that does not run")
        return _checked(Block(path, line, lang, lines, mode, expect_failure=fails["text"]))
    raise DocError(
        f"{path}:{where}: unknown directive `docs-test: {body}` "
        '(use `skip (reason)`, `python`, `fails "TEXT"`, or `mesh ARGS`)'
    )


def _checked(block: Block) -> Block:
    if block.mode == "console" and not any(text.startswith("$ ") for text in block.lines):
        raise DocError(f"{block.path}:{block.line}: console block without a `$ ` command")
    return block
