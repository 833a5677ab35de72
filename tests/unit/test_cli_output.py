"""``dormant_cli.output``: tables in colour on a terminal and as plain aligned text when piped, JSON,
times and digests, and progress that is a spinner on a terminal and at most one line otherwise."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from dormant_cli import output
from dormant_cli.output import (
    Column,
    Styled,
    ago,
    plain_table,
    print_json,
    print_table,
    progress,
    short_digest,
)

ESC = "\x1b["
COLUMNS = [Column("service"), Column("replicas", justify="right"), Column("state")]
ROWS: list[list[output.Cell]] = [
    ["user-service", "1/1", output.state("serving")],
    ["a", "10/10", Styled("failed", "red")],
]


class Terminal(io.StringIO):
    """A stream that says it is an interactive terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _colour_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "100")


def test_a_piped_table_is_plain_aligned_text() -> None:
    out = io.StringIO()
    print_table(COLUMNS, ROWS, file=out)
    assert out.getvalue() == (
        "SERVICE       REPLICAS  STATE\nuser-service       1/1  serving\na                10/10  failed\n"
    )
    assert ESC not in out.getvalue()


def test_plain_text_has_no_trailing_blanks_and_keeps_columns_two_apart() -> None:
    text = plain_table([Column("a"), Column("b")], [["x", ""], ["longer", "y"]])
    assert text.splitlines() == ["A       B", "x", "longer  y"]


def test_a_terminal_gets_a_coloured_table_with_the_same_cells() -> None:
    out = Terminal()
    print_table(COLUMNS, ROWS, file=out, title="services")
    text = out.getvalue()
    assert ESC in text  # colour and bold
    assert "\x1b[32m" in text  # serving is green
    for cell in ("services", "service", "replicas", "user-service", "1/1", "serving", "10/10", "failed"):
        assert cell in text
    assert "SERVICE" not in text  # headers as written, not the plain form's capitals


def test_a_dumb_terminal_is_treated_as_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "dumb")
    out = Terminal()
    print_table(COLUMNS, ROWS, file=out)
    assert ESC not in out.getvalue() and out.getvalue().startswith("SERVICE")


def test_an_empty_table_prints_its_message_on_stderr_only(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    print_table(COLUMNS, [], file=out, empty="no services yet")
    assert out.getvalue() == ""
    assert capsys.readouterr().err == "no services yet\n"


def test_record_lines_align_their_labels() -> None:
    out = io.StringIO()
    output.print_lines([("service", "user-service"), ("alias live", Styled("v1=100%", "green"))], file=out)
    assert out.getvalue() == "service     user-service\nalias live  v1=100%\n"


def test_json_is_one_indented_document_with_keys_in_order() -> None:
    out = io.StringIO()
    print_json({"services": [{"service": "café", "latest": 2, "deployed": None}]}, file=out)
    text = out.getvalue()
    assert text.endswith("}\n") and "café" in text and ESC not in text
    assert list(json.loads(text)["services"][0]) == ["service", "latest", "deployed"]


def test_times_are_relative_and_old_ones_are_dates() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert ago(now - timedelta(seconds=5), now) == "5s ago"
    assert ago(now - timedelta(minutes=3, seconds=59), now) == "3m ago"
    assert ago(now - timedelta(hours=2), now) == "2h ago"
    assert ago(now - timedelta(days=6), now) == "6d ago"
    assert ago(now - timedelta(days=30), now) == (now - timedelta(days=30)).astimezone().strftime("%Y-%m-%d")
    assert ago(now + timedelta(seconds=3), now) == "0s ago"  # another clock slightly ahead
    assert ago(None) == "-"


def test_digests_are_shortened() -> None:
    image = "user-service@sha256:9634b4a134a903f0a58356987b7a0616f6b5ec887c319d6e8e05de86defad8c4"
    assert short_digest(image) == "9634b4a134a9"
    assert short_digest("sha256:abcdef0123456789") == "abcdef012345"
    assert output.weights_text({2: 10, 1: 90}) == "v1=90% v2=10%"
    assert output.weights_text({}) == "-"


def test_a_short_piped_wait_prints_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "PROGRESS_AFTER_S", 3600.0)
    err = io.StringIO()
    with progress("deploying", stream=err) as update:
        update("waiting for a pod")
    assert err.getvalue() == ""


def test_a_long_piped_wait_prints_one_line_with_the_latest_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "PROGRESS_AFTER_S", 0.0)
    err = io.StringIO()
    shown = threading.Event()
    with progress("deploying user-service", stream=err) as update:
        for _ in range(2000):  # until the line is out (no fixed sleep: the machine may be slow)
            if err.getvalue():
                shown.set()
                break
            threading.Event().wait(0.005)
        update("waiting for user-service: waiting for a pod to claim 1 of 1 slots")
        update("still waiting")
    assert shown.is_set()
    assert err.getvalue() == "deploying user-service ...\n"  # once, and nothing after it


def test_progress_can_stay_silent_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "PROGRESS_AFTER_S", 0.0)
    err = io.StringIO()
    with progress("building", stream=err, piped=False):
        threading.Event().wait(0.05)
    assert err.getvalue() == ""


def test_a_terminal_gets_a_spinner_with_the_latest_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "PROGRESS_AFTER_S", 0.0)
    err = Terminal()
    with progress("deploying user-service", stream=err) as update:
        for _ in range(2000):
            if "deploying user-service" in err.getvalue():
                break
            threading.Event().wait(0.005)
        update("waiting for a pod")
    text = err.getvalue()
    assert "deploying user-service" in text and ESC in text


def test_a_quick_wait_on_a_terminal_shows_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(output, "PROGRESS_AFTER_S", 3600.0)
    err = Terminal()
    with progress("calling user-service.createUser", stream=err) as update:
        update("still calling")
    assert err.getvalue() == ""
