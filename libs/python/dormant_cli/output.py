"""How the ``dormant`` command shows things: tables, JSON, times, digests and progress.

On a terminal, tables and progress use rich (colour, a spinner that disappears when done); piped or
redirected, the same tables are plain aligned text with no escape codes, and progress is one line on
stderr. Progress shows only once a wait has lasted ``PROGRESS_AFTER_S``. ``--json`` output goes through
``print_json`` (stable keys, one document). Commands describe a table (``Column``s and rows of cells)
and never format one themselves.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, TextIO

if TYPE_CHECKING:
    from rich.status import Status

PROGRESS_AFTER_S = 1.0
"""A piped wait prints its line once it has lasted this long (shorter waits stay silent)."""
GAP = "  "
"""Between the columns of a plain table."""


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    justify: Literal["left", "right"] = "left"
    style: str | None = None
    """A rich style for the whole column (terminal only)."""


@dataclass(frozen=True, slots=True)
class Styled:
    """A cell with its own rich style (terminal only; piped, just ``text``)."""

    text: str
    style: str

    def __str__(self) -> str:
        return self.text


Cell = str | Styled
STATE_STYLES = {
    "serving": "green",
    "running": "green",
    "succeeded": "green",
    "approved": "green",
    "starting": "yellow",
    "pending": "yellow",
    "waiting": "yellow",
    "free": "cyan",
    "failed": "red",
    "rolled-back": "red",
    "gone": "dim",
    "silent": "red",
    "deprecated": "dim",
    "stopped": "dim",
}


def state(text: str) -> Styled:
    """A state word, coloured by what it means (green: serving, yellow: on its way, red: trouble)."""
    return Styled(text, STATE_STYLES.get(text, ""))


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal that understands escape codes."""
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM") != "dumb"


def plain_table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]]) -> str:
    """Aligned text: upper-case headers, columns two spaces apart, no trailing blanks."""
    cells = [[c.header.upper() for c in columns], *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = []
    for row in cells:
        parts = [
            text.rjust(width) if column.justify == "right" else text.ljust(width)
            for text, width, column in zip(row, widths, columns, strict=True)
        ]
        lines.append(GAP.join(parts).rstrip())
    return "\n".join(lines)


def print_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    title: str | None = None,
    empty: str | None = None,
    file: TextIO | None = None,
) -> None:
    """A table on ``file`` (stdout): rich on a terminal, plain text otherwise. With no rows, ``empty``
    (if given) goes to stderr instead, so a pipeline reading stdout sees nothing."""
    out = file or sys.stdout
    if not rows:
        if empty:
            print(empty, file=sys.stderr)
        return
    if not is_terminal(out):
        if title:
            out.write(f"{title}\n")
        out.write(plain_table(columns, rows) + "\n")
        return
    from rich import box  # lazy: start-up time (only a terminal needs rich)
    from rich.console import Console  # lazy: start-up time
    from rich.table import Table  # lazy: start-up time
    from rich.text import Text  # lazy: start-up time

    table = Table(
        title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, header_style="bold"
    )
    for column in columns:
        table.add_column(column.header, justify=column.justify, style=column.style)
    for row in rows:
        table.add_row(*(Text(c.text, style=c.style) if isinstance(c, Styled) else Text(c) for c in row))
    Console(file=out, highlight=False).print(table)


def print_lines(lines: Sequence[tuple[str, Cell]], *, file: TextIO | None = None) -> None:
    """``label  value`` lines (a record, not a table), labels aligned; values styled on a terminal."""
    out = file or sys.stdout
    width = max((len(label) for label, _ in lines), default=0)
    if not is_terminal(out):
        for label, value in lines:
            out.write(f"{label.ljust(width)}{GAP}{value}".rstrip() + "\n")
        return
    from rich.console import Console  # lazy: start-up time
    from rich.text import Text  # lazy: start-up time

    console = Console(file=out, highlight=False)
    for label, value in lines:
        text = Text()
        text.append(label.ljust(width) + GAP, style="bold")
        if isinstance(value, Styled):
            text.append(value.text, style=value.style)
        else:
            text.append(value)
        console.print(text)


def print_json(value: Any, *, file: TextIO | None = None) -> None:
    """One JSON document (indented, keys as given) and a newline."""
    out = file or sys.stdout
    json.dump(value, out, indent=2, ensure_ascii=False)
    out.write("\n")


def iso(moment: datetime | None) -> str | None:
    """``moment`` as ISO 8601 with its offset (for JSON), None as None."""
    return None if moment is None else moment.isoformat()


def ago(moment: datetime | None, now: datetime | None = None) -> str:
    """``12s ago``, ``5m ago``, ``3h ago``, ``2d ago`` (``-`` for None); past the week, the date."""
    if moment is None:
        return "-"
    now = now or datetime.now(UTC)
    seconds = max(0, int((now - moment).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            if unit == "d" and seconds >= 7 * 86400:
                return moment.astimezone().strftime("%Y-%m-%d")
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def short_digest(image: str, length: int = 12) -> str:
    """``name@sha256:9634b4a1...`` (or a bare digest) as its first ``length`` hex digits."""
    digest = image.rsplit("@", 1)[-1]
    return digest.split(":", 1)[-1][:length]


def weights_text(weights: dict[int, int]) -> str:
    """``v1=90% v2=10%`` in version order; ``-`` for none."""
    return " ".join(f"v{v}={w}%" for v, w in sorted(weights.items())) or "-"


class Progress(Protocol):
    def __call__(self, message: str, /) -> None: ...


@contextmanager
def progress(message: str, *, stream: TextIO | None = None, piped: bool = True) -> Iterator[Progress]:
    """Show, on stderr, that something is being waited for; yields ``update(message)``.

    Nothing shows until the wait has lasted ``PROGRESS_AFTER_S`` (a quick command stays quiet). Then a
    terminal gets a spinner with the latest message, gone when the block ends; otherwise (unless
    ``piped`` is off) one line, ``message ...``, that later updates do not repeat.
    """
    out = stream or sys.stderr
    terminal = is_terminal(out)
    if not terminal and not piped:
        yield lambda text: None
        return
    latest = [message]
    spinner: list[Status] = []
    done = threading.Event()
    lock = threading.Lock()

    def announce() -> None:
        if done.wait(PROGRESS_AFTER_S):
            return
        with lock:
            if done.is_set():
                return
            if terminal:
                from rich.console import Console  # lazy: start-up time (only a long wait needs rich)

                spinner.append(Console(file=out, highlight=False).status(latest[0]))
                spinner[0].start()
            else:
                out.write(f"{latest[0]} ...\n")
                out.flush()

    def update(text: str) -> None:
        with lock:
            latest[0] = text
            if spinner:
                spinner[0].update(text)

    waiter = threading.Thread(target=announce, name="dormant-progress", daemon=True)
    waiter.start()
    try:
        yield update
    finally:
        with lock:
            done.set()
        waiter.join()
        if spinner:
            spinner[0].stop()
