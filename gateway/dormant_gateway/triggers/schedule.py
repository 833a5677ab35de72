"""Schedules of cron triggers: cron expressions (5 fields, or 6 with seconds first) and ``rate(...)``.

Ticks are absolute instants that every replica computes the same way: cron ticks from the expression
in the trigger's time zone, rate ticks at multiples of the period since the Unix epoch.

Every schedule is bounded when it is parsed, so that computing its ticks can never overflow or run
away: a rate lies between ``MIN_RATE_S`` and ``MAX_RATE_S``, an expression is at most
``MAX_EXPRESSION`` characters of ASCII, and a time zone is an IANA name of at most ``MAX_TIMEZONE``
ASCII characters that the system's zone database knows. ``parse_schedule`` raises ``ScheduleError``
for anything else, whatever the input's type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

MIN_RATE_S = 1
MAX_RATE_S = 366 * 86400
MAX_EXPRESSION = 256
MAX_TIMEZONE = 64

# ASCII digits only: str.isdigit() and int() also accept other scripts' digits ('٣').
_RATE = re.compile(r"^rate\(([0-9]{1,12})\s+(second|seconds|minute|minutes|hour|hours|day|days)\)$", re.ASCII)
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_CRON = re.compile(r"^[A-Za-z0-9*/,?#LW -]+$", re.ASCII)
_TIMEZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9][A-Za-z0-9_+-]*)*$", re.ASCII)


class ScheduleError(ValueError):
    """The expression or the time zone is not valid."""


@dataclass(frozen=True, slots=True)
class Schedule:
    expression: str
    timezone: str
    rate_s: int | None

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment`` (an aware datetime), in UTC."""
        if self.rate_s is not None:
            epoch = moment.timestamp()
            ticks = int(epoch // self.rate_s) + 1
            return datetime.fromtimestamp(ticks * self.rate_s, UTC)
        zone = ZoneInfo(self.timezone)
        fields = self.expression.split()
        itr = croniter(self.expression, moment.astimezone(zone), second_at_beginning=len(fields) == 6)
        tick: datetime = itr.get_next(datetime)
        return tick.astimezone(UTC)

    def ticks_between(self, start: datetime, end: datetime, *, limit: int = 1000) -> list[datetime]:
        """Ticks in (start, end], at most ``limit``."""
        ticks: list[datetime] = []
        moment = start
        while len(ticks) < limit:
            moment = self.next_after(moment)
            if moment > end:
                break
            ticks.append(moment)
        return ticks


def check_timezone(timezone: object) -> str:
    """``timezone`` if it names a zone of the system's database, else ``ScheduleError``."""
    if not isinstance(timezone, str) or not 0 < len(timezone) <= MAX_TIMEZONE:
        raise ScheduleError(f"a time zone is an IANA name of at most {MAX_TIMEZONE} characters")
    if not _TIMEZONE.match(timezone):
        raise ScheduleError(f"unknown time zone {timezone!r}")
    try:
        ZoneInfo(timezone)
    except Exception:  # ZoneInfoNotFoundError, ValueError, OSError (a name the file system refuses)
        raise ScheduleError(f"unknown time zone {timezone!r}") from None
    return timezone


def parse_schedule(expression: object, timezone: object = "UTC") -> Schedule:
    zone = check_timezone(timezone)
    if not isinstance(expression, str) or len(expression) > MAX_EXPRESSION:
        raise ScheduleError(f"a schedule is a string of at most {MAX_EXPRESSION} characters")
    text = expression.strip()
    match = _RATE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2).rstrip("s")
        period = amount * _UNIT_S[unit]
        if not MIN_RATE_S <= period <= MAX_RATE_S:
            raise ScheduleError(f"a rate must be from 1 second to {MAX_RATE_S // 86400} days")
        return Schedule(text, zone, period)
    if text.startswith("rate"):
        raise ScheduleError("a rate is rate(N unit): N in ASCII digits, unit seconds, minutes, hours or days")
    fields = text.split()
    if len(fields) not in (5, 6) or not _CRON.match(text):
        raise ScheduleError("a cron expression has 5 fields (or 6, seconds first), or use rate(N unit)")
    try:
        schedule = Schedule(text, zone, None)
        # Two ticks from a fixed instant: an expression that cannot produce them is refused now,
        # not by the scheduler on every pass.
        schedule.next_after(schedule.next_after(datetime(2000, 1, 1, tzinfo=UTC)))
    except Exception as exc:  # croniter's errors, ValueError, KeyError, OverflowError ...
        raise ScheduleError(f"invalid cron expression {text!r}: {exc}") from None
    return schedule


def utc_now() -> datetime:
    return datetime.now(UTC)


def floor_second(moment: datetime) -> datetime:
    return moment - timedelta(microseconds=moment.microsecond)
