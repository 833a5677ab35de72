"""``dormant._control``: the sidecar ↔ runtime protocol both ends encode and decode through."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from dormant import _control as control


@pytest.mark.parametrize(
    "command",
    [
        control.Drain(),
        control.Load(app_dir=Path("/srv/app"), service="svc", version=3, live=False, slot=2),
        control.Load(app_dir=Path("/srv/app"), service="svc", version=1),
    ],
)
def test_commands_round_trip(command: control.Command) -> None:
    line = control.encode_command(command)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert control.decode_command(line) == command


def test_the_command_line_format_is_the_documented_one() -> None:
    line = control.encode_command(control.Load(app_dir=Path("/a"), service="s", version=2, slot=0))
    assert orjson.loads(line) == {
        "cmd": "load",
        "app_dir": "/a",
        "service": "s",
        "version": 2,
        "live": True,
        "slot": 0,
    }


@pytest.mark.parametrize(
    "line",
    [
        b"not json\n",
        b"[]\n",
        b'{"cmd": "reboot"}\n',
        b'{"cmd": "load", "version": 1}\n',
        b'{"cmd": "load", "app_dir": "/a", "version": "1"}\n',
        b'{"cmd": "load", "app_dir": "/a", "version": true}\n',
    ],
)
def test_lines_that_are_not_commands_are_ignored(line: bytes) -> None:
    assert control.decode_command(line) is None


def test_events_round_trip_with_their_fields() -> None:
    event = control.decode_event(control.encode_event(control.FAILED, error="boom"))
    assert event is not None and event.kind == control.FAILED and event.error == "boom"
    ready = control.decode_event(control.encode_event(control.READY, service="s", version=1))
    assert ready == control.Event(control.READY, {"service": "s", "version": 1})


def test_unknown_or_malformed_events_are_none_and_unknown_kinds_cannot_be_sent() -> None:
    assert control.decode_event(b'{"event": "exploded"}\n') is None
    assert control.decode_event(b"{not json\n") is None
    assert control.decode_event(b'"ready"\n') is None
    with pytest.raises(ValueError):
        control.encode_event("exploded")


def test_limits_ride_the_load_command_and_nonsense_is_dropped() -> None:
    load = control.Load(Path("/app"), "svc", 2, memory_mb=128, max_concurrency=3)
    decoded = control.decode_command(control.encode_command(load))
    assert isinstance(decoded, control.Load) and (decoded.memory_mb, decoded.max_concurrency) == (128, 3)
    plain = control.decode_command(control.encode_command(control.Load(Path("/app"), "svc", 2)))
    assert isinstance(plain, control.Load) and (plain.memory_mb, plain.max_concurrency) == (None, None)
    odd = orjson.dumps(
        {
            "cmd": "load",
            "app_dir": "/a",
            "service": "s",
            "version": 1,
            "memory_mb": -5,
            "max_concurrency": True,
        }
    )
    weird = control.decode_command(odd)
    assert isinstance(weird, control.Load) and (weird.memory_mb, weird.max_concurrency) == (None, None)
