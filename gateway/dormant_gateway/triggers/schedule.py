"""Schedules of cron triggers: cron expressions (5 fields, or 6 with seconds first) and ``rate(...)``.

Ticks are absolute instants that every replica computes the same way: cron ticks from the expression
in the trigger's time zone, rate ticks at multiples of the period since the Unix epoch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter

_RATE = re.compile(r"^rate\((\d+)\s+(second|seconds|minute|minutes|hour|hours|day|days)\)$")
_UNIT_S = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


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


def parse_schedule(expression: str, timezone: str = "UTC") -> Schedule:
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone {timezone!r}") from None
    text = expression.strip()
    match = _RATE.match(text)
    if match:
        amount, unit = int(match.group(1)), match.group(2).rstrip("s")
        if amount < 1:
            raise ScheduleError("a rate must be at least 1")
        return Schedule(text, timezone, amount * _UNIT_S[unit])
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ScheduleError("a cron expression has 5 fields (or 6, seconds first), or use rate(N unit)")
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC), second_at_beginning=len(fields) == 6).get_next(
            datetime
        )
    except (CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, ValueError, KeyError) as exc:
        raise ScheduleError(f"invalid cron expression {text!r}: {exc}") from None
    return Schedule(text, timezone, None)


def utc_now() -> datetime:
    return datetime.now(UTC)


def floor_second(moment: datetime) -> datetime:
    return moment - timedelta(microseconds=moment.microsecond)
